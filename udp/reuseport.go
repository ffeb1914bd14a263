package udp

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync"

	"github.com/sockshare/sockshare/reuse"
)

// ReusePortGroup is one SO_REUSEPORT UDP socket per worker slot, bound to
// one address, created in slot order (the order cBPF steering indexes).
type ReusePortGroup struct {
	mu     sync.Mutex
	addr   net.Addr
	conns  []*net.UDPConn
	steer  bool
	closed bool
}

// NewReusePortGroup binds slots sockets to address. With steer, it attaches
// a cBPF program that picks a random member for every datagram; where that
// is unsupported it fails with an error wrapping reuse.ErrUnsupported.
func NewReusePortGroup(ctx context.Context, network, address string, slots int, steer bool) (*ReusePortGroup, error) {
	if slots < 1 {
		return nil, fmt.Errorf("udp: reuseport group needs at least one slot, got %d", slots)
	}
	lc := reuse.ListenConfig()
	first, err := lc.ListenPacket(ctx, network, address)
	if err != nil {
		return nil, err
	}
	g := &ReusePortGroup{addr: first.LocalAddr(), conns: []*net.UDPConn{first.(*net.UDPConn)}, steer: steer}
	for len(g.conns) < slots {
		pc, err := lc.ListenPacket(ctx, network, g.addr.String())
		if err != nil {
			g.Close()
			return nil, err
		}
		g.conns = append(g.conns, pc.(*net.UDPConn))
	}
	if steer {
		rc, err := g.conns[0].SyscallConn()
		if err == nil {
			err = reuse.AttachCBPFRandom(rc, slots)
		}
		if err != nil {
			g.Close()
			return nil, fmt.Errorf("udp: steering: %w", err)
		}
	}
	return g, nil
}

// Addr is the address of every socket of the group.
func (g *ReusePortGroup) Addr() net.Addr { return g.addr }

// FD returns slot's descriptor; it stays owned by the group. A slot beyond
// the group is an error (steering needs a fixed group).
func (g *ReusePortGroup) FD(slot int) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return -1, net.ErrClosed
	}
	if slot < 0 || slot >= len(g.conns) {
		return -1, fmt.Errorf("udp: slot %d outside a group of %d", slot, len(g.conns))
	}
	rc, err := g.conns[slot].SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	if err := rc.Control(func(u uintptr) { fd = int(u) }); err != nil {
		return -1, err
	}
	return fd, nil
}

// Close closes every socket of the group.
func (g *ReusePortGroup) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil
	}
	g.closed = true
	for _, c := range g.conns {
		c.Close()
	}
	return nil
}

// FilePacketConn turns a datagram descriptor received from the master into
// a *net.UDPConn. It takes ownership of fd and closes it (the connection
// works on a duplicate).
func FilePacketConn(fd int) (*net.UDPConn, error) {
	f := os.NewFile(uintptr(fd), "sockshare-udp")
	if f == nil {
		return nil, fmt.Errorf("udp: invalid descriptor %d", fd)
	}
	defer f.Close()
	pc, err := net.FilePacketConn(f)
	if err != nil {
		return nil, fmt.Errorf("udp: packet conn from descriptor: %w", err)
	}
	uc, ok := pc.(*net.UDPConn)
	if !ok {
		pc.Close()
		return nil, fmt.Errorf("udp: descriptor is a %T, not a UDP socket", pc)
	}
	return uc, nil
}
