package tcp

import (
	"context"
	"fmt"
	"net"
	"sync"

	"github.com/sockshare/sockshare/reuse"
)

// ReusePortGroup is the master side of the reuseport strategy: one
// SO_REUSEPORT listening socket per worker slot, all bound to one address.
// The group owns the sockets; a worker gets a duplicate of its slot's socket,
// so the connections queued on that socket survive the worker.
type ReusePortGroup struct {
	mu      sync.Mutex
	network string
	addr    net.Addr // the bound address, with the real port
	lns     []*net.TCPListener
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
	g.lns = append(g.lns, first.(*net.TCPListener))
	g.addr = first.Addr()
	if err := g.grow(ctx, slots); err != nil {
		g.Close()
		return nil, err
	}
	return g, nil
}

func (g *ReusePortGroup) grow(ctx context.Context, slots int) error {
	lc := reuse.ListenConfig()
	for len(g.lns) < slots {
		ln, err := lc.Listen(ctx, g.network, g.addr.String())
		if err != nil {
			return err
		}
		g.lns = append(g.lns, ln.(*net.TCPListener))
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
	if slot >= len(g.lns) {
		if err := g.grow(context.Background(), slot+1); err != nil {
			return -1, err
		}
	}
	return listenerFD(g.lns[slot])
}

// Len returns the number of sockets in the group.
func (g *ReusePortGroup) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.lns)
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
	for _, ln := range g.lns {
		ln.Close()
	}
	return nil
}
