package sockfd

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
)

// Conn is what Hold takes: a *net.TCPListener, *net.UDPConn, ...
type Conn interface {
	syscall.Conn
	io.Closer
}

// Held is a socket descriptor kept open, outside the netpoller.
type Held struct {
	mu     sync.Mutex
	fd     int
	addr   net.Addr
	closed bool
}

// Hold takes c's socket out of the netpoller and returns it held. It closes
// c whatever happens; on error nothing stays open.
func Hold(c Conn, addr net.Addr) (*Held, error) {
	fd, err := HoldFD(c)
	if err != nil {
		return nil, err
	}
	return &Held{fd: fd, addr: addr}, nil
}

// HoldFD is Hold returning the bare descriptor, which the caller owns and
// closes with CloseFD.
func HoldFD(c Conn) (int, error) {
	defer c.Close()
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("hold socket: %w", err)
	}
	fd := -1
	var dupErr error
	if err := rc.Control(func(u uintptr) { fd, dupErr = DupCloexec(int(u)) }); err != nil {
		return -1, fmt.Errorf("hold socket: %w", err)
	}
	if dupErr != nil {
		return -1, fmt.Errorf("hold socket: dup: %w", dupErr)
	}
	return fd, nil
}

// CloseFD closes a descriptor from HoldFD.
func CloseFD(fd int) error { return closeFD(fd) }

// Addr is the socket's bound address.
func (h *Held) Addr() net.Addr { return h.addr }

// FD returns the descriptor; it stays owned by h and valid until Close.
func (h *Held) FD() (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return -1, net.ErrClosed
	}
	return h.fd, nil
}

// Close closes the descriptor. Processes holding duplicates keep the
// socket open. Close is idempotent.
func (h *Held) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	h.closed = true
	return closeFD(h.fd)
}

// Group is a list of held sockets indexed by slot: the members of a
// reuseport group. A slot may be empty (see Take), and filled again.
type Group struct {
	opening sync.Mutex // serialises FDOrOpen
	mu      sync.Mutex
	fds     []int // -1: empty slot
	closed  bool
}

// Add holds c (see Hold) as the next slot.
func (g *Group) Add(c Conn) error {
	g.mu.Lock()
	n := len(g.fds)
	g.mu.Unlock()
	return g.Put(n, c)
}

// Put holds c (see Hold) in slot, which must be empty or beyond the end
// (the slots between stay empty). It closes c whatever happens.
func (g *Group) Put(slot int, c Conn) error {
	fd, err := HoldFD(c)
	if err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.closed:
		closeFD(fd)
		return net.ErrClosed
	case slot >= len(g.fds):
		for len(g.fds) < slot {
			g.fds = append(g.fds, -1)
		}
		g.fds = append(g.fds, fd)
	case slot >= 0 && slot < len(g.fds) && g.fds[slot] < 0:
		g.fds[slot] = fd
	default:
		closeFD(fd)
		return fmt.Errorf("slot %d of a group of %d is not free", slot, len(g.fds))
	}
	return nil
}

// FD returns slot's descriptor; it stays owned by g.
func (g *Group) FD(slot int) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return -1, net.ErrClosed
	}
	if slot < 0 || slot >= len(g.fds) {
		return -1, fmt.Errorf("slot %d outside a group of %d", slot, len(g.fds))
	}
	if g.fds[slot] < 0 {
		return -1, fmt.Errorf("slot %d: %w", slot, ErrEmptySlot)
	}
	return g.fds[slot], nil
}

// FDOrOpen is FD, except that a slot with no socket (empty, or beyond
// the end: the slots between stay empty) is first filled with the socket
// open returns, which is held as Put holds it. opened says whether open
// ran. Calls are serialised, so two callers never open one slot twice.
func (g *Group) FDOrOpen(slot int, open func() (Conn, error)) (fd int, opened bool, err error) {
	if slot < 0 {
		return -1, false, fmt.Errorf("negative slot %d", slot)
	}
	g.opening.Lock()
	defer g.opening.Unlock()
	if fd, err := g.FD(slot); err == nil || (slot < g.Len() && !errors.Is(err, ErrEmptySlot)) {
		return fd, false, err
	}
	c, err := open()
	if err != nil {
		return -1, false, err
	}
	if err := g.Put(slot, c); err != nil {
		return -1, false, err
	}
	fd, err = g.FD(slot)
	return fd, err == nil, err
}

// ErrEmptySlot is returned by FD for a slot whose socket was taken out.
var ErrEmptySlot = errors.New("empty slot")

// Take removes slot's descriptor from g and returns it, owned by the
// caller, who closes it with CloseFD.
func (g *Group) Take(slot int) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return -1, net.ErrClosed
	}
	if slot < 0 || slot >= len(g.fds) || g.fds[slot] < 0 {
		return -1, fmt.Errorf("slot %d: %w", slot, ErrEmptySlot)
	}
	fd := g.fds[slot]
	g.fds[slot] = -1
	return fd, nil
}

// Len is the number of slots of g, empty ones included.
func (g *Group) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.fds)
}

// Live is the number of slots of g that hold a socket, and one of them
// (-1 if none).
func (g *Group) Live() (n, anyFD int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	anyFD = -1
	for _, fd := range g.fds {
		if fd >= 0 {
			n++
			anyFD = fd
		}
	}
	return n, anyFD
}

// Close closes every socket of g. It is idempotent.
func (g *Group) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil
	}
	g.closed = true
	var errs []error
	for _, fd := range g.fds {
		if fd < 0 {
			continue
		}
		if err := closeFD(fd); err != nil {
			errs = append(errs, err)
		}
	}
	g.fds = nil
	return errors.Join(errs...)
}
