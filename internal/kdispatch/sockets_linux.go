package kdispatch

import (
	"context"
	"fmt"
	"github.com/sockshare/sockshare/internal/ipc"
	"net"
	"sync"
	"syscall"

	"github.com/sockshare/sockshare/internal/sockfd"
	"github.com/sockshare/sockshare/reuse"
)

// Sockets is a group under kernel dispatch: one SO_REUSEPORT socket per
// slot, owned by the master as under reuseport, with a BPF program that
// picks a live slot at SYN time (datagram arrival for UDP). A slot is live
// while a worker of it listens; a slot whose worker is being restarted is
// not, so it gets nothing new while its queue waits for the replacement.
type Sockets struct {
	mu   sync.Mutex
	addr net.Addr
	held sockfd.Group
	kd   *Group
}

// OpenSockets binds slots sockets to address and attaches mode's
// program. Every slot starts not live. TCP sockets are plain TCP: a BPF
// program cannot be attached to the MPTCP sockets Go listens with by
// default.
func OpenSockets(network, address string, slots int, mode Mode) (_ *Sockets, err error) {
	k := &Sockets{}
	defer func() {
		if err != nil {
			k.Close()
		}
	}()
	lc := reuse.ListenConfig()
	lc.SetMultipathTCP(false)
	ctx := context.Background()
	bind := func(addr string) (sockfd.Conn, net.Addr, error) {
		if ipc.PacketNet(network) {
			pc, err := lc.ListenPacket(ctx, network, addr)
			if err != nil {
				return nil, nil, err
			}
			return pc.(*net.UDPConn), pc.LocalAddr(), nil
		}
		ln, err := lc.Listen(ctx, network, addr)
		if err != nil {
			return nil, nil, err
		}
		return ln.(*net.TCPListener), ln.Addr(), nil
	}
	fds := make([]int, slots)
	for i := range slots {
		addr := address
		if k.addr != nil {
			addr = k.addr.String() // the port the first bind chose
		}
		c, a, err := bind(addr)
		if err != nil {
			return nil, err
		}
		k.addr = a
		if err := k.held.Put(i, c); err != nil {
			return nil, err
		}
		if fds[i], err = k.held.FD(i); err != nil {
			return nil, err
		}
	}
	if k.kd, err = NewGroup(mode, fds); err != nil {
		return nil, err
	}
	for i := range slots {
		if err := k.kd.SetLive(i, false); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// Addr is the bound address.
func (k *Sockets) Addr() net.Addr { return k.addr }

// Slots is the number of slots the group was opened with: fixed.
func (k *Sockets) Slots() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.kd == nil {
		return 0
	}
	return k.kd.Len()
}

// FD returns slot's socket; it stays owned by k.
func (k *Sockets) FD(slot int) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.kd == nil {
		return -1, net.ErrClosed
	}
	if slot < 0 || slot >= k.kd.Len() {
		return -1, fmt.Errorf("kernel dispatch: slot %d outside a group of %d", slot, k.kd.Len())
	}
	return k.held.FD(slot)
}

// SetLive says whether the program may choose slot.
func (k *Sockets) SetLive(slot int, live bool) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.kd == nil {
		return net.ErrClosed
	}
	return k.kd.SetLive(slot, live)
}

// Drain accepts what is queued on slot's socket, which must not be live,
// and returns the connections, owned by the caller. Datagram sockets have
// nothing to hand over.
func (k *Sockets) Drain(slot int) ([]int, error) {
	fd, err := k.held.FD(slot)
	if err != nil {
		return nil, err
	}
	if typ, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TYPE); err != nil || typ != syscall.SOCK_STREAM {
		return nil, err
	}
	var queued []int
	for {
		nfd, _, err := syscall.Accept4(fd, syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK)
		switch err {
		case nil:
			queued = append(queued, nfd)
			continue
		case syscall.EINTR, syscall.ECONNABORTED:
			continue
		case syscall.EAGAIN:
			return queued, nil
		}
		return queued, fmt.Errorf("kernel dispatch: drain slot %d: accept: %w", slot, err)
	}
}

// CountsFD returns the descriptor of the open-connection counts (kernel
// leastconn), owned by k, or -1 for other programs and a nil k.
func (k *Sockets) CountsFD() int {
	if k == nil {
		return -1
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.kd == nil {
		return -1
	}
	return k.kd.ConnCountsFD()
}

// ClearCount zeroes slot's open-connection count, for a worker that died
// with connections open (the kernel closed them; nobody decremented).
func (k *Sockets) ClearCount(slot int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.kd != nil && k.kd.ConnCounts() != nil {
		k.kd.ConnCounts().Store(slot, 0)
	}
}

// Open returns each slot's open connections under leastconn, else nil.
func (k *Sockets) Open() []int64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.kd == nil || k.kd.ConnCounts() == nil {
		return nil
	}
	c := k.kd.ConnCounts()
	out := make([]int64, c.Len())
	for i := range out {
		out[i] = c.Load(i)
	}
	return out
}

// Chosen returns the connections (datagrams) the program sent to each
// slot so far.
func (k *Sockets) Chosen() []uint64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.kd == nil {
		return nil
	}
	c, _ := k.kd.Counts()
	return c
}

// Close detaches the program, then closes the sockets.
func (k *Sockets) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.kd != nil {
		k.kd.Close()
		k.kd = nil
	}
	return k.held.Close()
}
