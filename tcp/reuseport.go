package tcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/sockshare/sockshare/internal/sockfd"
	"github.com/sockshare/sockshare/reuse"
)

// ReusePortGroup is the master side of the reuseport strategy: one
// SO_REUSEPORT listening socket per worker slot, all bound to one address.
// The group owns the sockets; a worker gets a duplicate of its slot's socket,
// so the connections queued on that socket survive the worker. The master
// never accepts on them and keeps them out of its netpoller, so incoming
// connections do not wake it.
type ReusePortGroup struct {
	mu      sync.Mutex
	network string
	addr    net.Addr // the bound address, with the real port
	fds     []int    // by slot, held
	closed  bool
}

// NewReusePortGroup binds slots sockets to address, in slot order (the
// kernel numbers group members in the order they join, which cBPF steering
// relies on). Port 0 is resolved by the first bind and reused by the rest.
func NewReusePortGroup(ctx context.Context, network, address string, slots int) (*ReusePortGroup, error) {
	if slots < 1 {
		return nil, fmt.Errorf("tcp: reuseport group needs at least one slot, got %d", slots)
	}
	g := &ReusePortGroup{network: network}
	lc := reuse.ListenConfig()
	first, err := lc.Listen(ctx, network, address)
	if err != nil {
		return nil, err
	}
	g.addr = first.Addr()
	if err := g.add(first); err != nil {
		return nil, err
	}
	if err := g.grow(ctx, slots); err != nil {
		g.Close()
		return nil, err
	}
	return g, nil
}

func (g *ReusePortGroup) add(ln net.Listener) error {
	fd, err := sockfd.HoldFD(ln.(*net.TCPListener))
	if err != nil {
		return err
	}
	g.fds = append(g.fds, fd)
	return nil
}

func (g *ReusePortGroup) grow(ctx context.Context, slots int) error {
	lc := reuse.ListenConfig()
	for len(g.fds) < slots {
		ln, err := lc.Listen(ctx, g.network, g.addr.String())
		if err != nil {
			return err
		}
		if err := g.add(ln); err != nil {
			return err
		}
	}
	return nil
}

// Addr is the address every socket of the group is bound to.
func (g *ReusePortGroup) Addr() net.Addr { return g.addr }

// FD returns slot's listening descriptor, opening sockets up to slot if
// the group is smaller. The descriptor stays owned by the group.
func (g *ReusePortGroup) FD(slot int) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return -1, net.ErrClosed
	}
	if slot < 0 {
		return -1, fmt.Errorf("tcp: negative slot %d", slot)
	}
	if slot >= len(g.fds) {
		if err := g.grow(context.Background(), slot+1); err != nil {
			return -1, err
		}
	}
	return g.fds[slot], nil
}

// Len returns the number of sockets in the group.
func (g *ReusePortGroup) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.fds)
}

// Close closes every socket of the group. Connections queued on a socket no
// worker holds any more are reset by the kernel.
func (g *ReusePortGroup) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil
	}
	g.closed = true
	var errs []error
	for _, fd := range g.fds {
		if err := sockfd.CloseFD(fd); err != nil {
			errs = append(errs, err)
		}
	}
	g.fds = nil
	return errors.Join(errs...)
}
