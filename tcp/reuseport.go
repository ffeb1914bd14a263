package tcp

import (
	"context"
	"fmt"
	"math"
	"net"

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
	network string
	addr    net.Addr // the bound address, with the real port
	held    sockfd.Group
}

// NewReusePortGroup binds slots sockets to address, in slot order (the
// kernel numbers group members in the order they join, which cBPF steering
// relies on). Port 0 is resolved by the first bind and reused by the rest.
func NewReusePortGroup(ctx context.Context, network, address string, slots int) (*ReusePortGroup, error) {
	if slots < 1 {
		return nil, fmt.Errorf("tcp: reuseport group needs at least one slot, got %d", slots)
	}
	g, err := OpenReusePortSlot(ctx, network, address, 0)
	if err != nil {
		return nil, err
	}
	if err := g.growTo(ctx, slots); err != nil {
		g.Close()
		return nil, err
	}
	return g, nil
}

// OpenReusePortSlot binds one socket, slot's, of a new group; the other
// slots get theirs from FD when they need one. This way no socket is in the
// kernel's group unless some worker accepts on it.
func OpenReusePortSlot(ctx context.Context, network, address string, slot int) (*ReusePortGroup, error) {
	if slot < 0 {
		return nil, fmt.Errorf("tcp: negative slot %d", slot)
	}
	lc := reuse.ListenConfig()
	ln, err := lc.Listen(ctx, network, address)
	if err != nil {
		return nil, err
	}
	g := &ReusePortGroup{network: network, addr: ln.Addr()}
	if err := g.held.Put(slot, ln.(*net.TCPListener)); err != nil {
		return nil, err
	}
	return g, nil
}

// AdoptReusePortSlot makes ln, a listening socket bound with SO_REUSEPORT
// elsewhere (systemd's socket activation), slot's socket of a new group;
// the other slots bind beside it. ln is held as FD holds the others: the
// group owns it from now on, whatever happens.
func AdoptReusePortSlot(ln *net.TCPListener, slot int) (*ReusePortGroup, error) {
	if slot < 0 {
		ln.Close()
		return nil, fmt.Errorf("tcp: negative slot %d", slot)
	}
	g := &ReusePortGroup{network: ln.Addr().Network(), addr: ln.Addr()}
	if err := g.held.Put(slot, ln); err != nil {
		return nil, err
	}
	return g, nil
}

func (g *ReusePortGroup) growTo(ctx context.Context, slots int) error {
	for n := g.held.Len(); n < slots; n++ {
		if _, _, err := g.held.FDOrOpen(n, g.opener(ctx)); err != nil {
			return err
		}
	}
	return nil
}

// opener binds one more socket to the group's address.
func (g *ReusePortGroup) opener(ctx context.Context) func() (sockfd.Conn, error) {
	return func() (sockfd.Conn, error) {
		lc := reuse.ListenConfig()
		ln, err := lc.Listen(ctx, g.network, g.addr.String())
		if err != nil {
			return nil, err
		}
		return ln.(*net.TCPListener), nil
	}
}

// Addr is the address every socket of the group is bound to.
func (g *ReusePortGroup) Addr() net.Addr { return g.addr }

// FD returns slot's listening descriptor, opening one if the slot has none
// (beyond the end of the group, the slots between stay empty until asked
// for) or was released. The descriptor stays owned by the group.
func (g *ReusePortGroup) FD(slot int) (int, error) {
	fd, _, err := g.held.FDOrOpen(slot, g.opener(context.Background()))
	if err != nil {
		return -1, fmt.Errorf("tcp: slot %d: %w", slot, err)
	}
	return fd, nil
}

// Release takes slot's socket out of the group, so the kernel stops giving
// it connections, and returns the connections that were queued on it, as
// descriptors the caller owns (close-on-exec, non-blocking). Closing a
// SO_REUSEPORT listener resets whatever is still queued on it, so Release
// accepts the queue empty first; a connection whose handshake completes in
// the microseconds between the last accept and the close is reset.
func (g *ReusePortGroup) Release(slot int) (queued []int, err error) {
	fd, err := g.held.Take(slot)
	if err != nil {
		return nil, fmt.Errorf("tcp: release slot %d: %w", slot, err)
	}
	defer sockfd.CloseFD(fd)
	queued, err = acceptQueued(fd, nil, math.MaxInt)
	if err != nil {
		return queued, fmt.Errorf("tcp: release slot %d: accept: %w", slot, err)
	}
	return queued, nil
}

// Len returns the number of slots of the group, released ones included.
func (g *ReusePortGroup) Len() int { return g.held.Len() }

// Close closes every socket of the group. Connections queued on a socket no
// worker holds any more are reset by the kernel.
func (g *ReusePortGroup) Close() error { return g.held.Close() }
