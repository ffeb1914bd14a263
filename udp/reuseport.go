package udp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/sockshare/sockshare/internal/sockfd"
	"github.com/sockshare/sockshare/reuse"
)

// ReusePortGroup is one SO_REUSEPORT UDP socket per worker slot, bound to
// one address, created in slot order (the order cBPF steering indexes).
// The group owns the sockets and keeps them out of this process's
// netpoller (see [ReusePortGroup.FD]).
type ReusePortGroup struct {
	mu      sync.Mutex // serialises changes of membership
	network string
	addr    net.Addr
	steer   bool
	held    sockfd.Group // by slot: never read here
}

// NewReusePortGroup binds slots sockets to address. With steer, it attaches
// a cBPF program that picks a random member for every datagram; where that
// is unsupported it fails with an error wrapping reuse.ErrUnsupported.
func NewReusePortGroup(ctx context.Context, network, address string, slots int, steer bool) (_ *ReusePortGroup, err error) {
	if slots < 1 {
		return nil, fmt.Errorf("udp: reuseport group needs at least one slot, got %d", slots)
	}
	var conns []*net.UDPConn // open, not yet held
	g := &ReusePortGroup{network: network, steer: steer}
	defer func() {
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			g.Close()
		}
	}()
	lc := reuse.ListenConfig()
	first, err := lc.ListenPacket(ctx, network, address)
	if err != nil {
		return nil, err
	}
	conns = append(conns, first.(*net.UDPConn))
	g.addr = first.LocalAddr()
	for len(conns) < slots {
		pc, err := lc.ListenPacket(ctx, network, g.addr.String())
		if err != nil {
			return nil, err
		}
		conns = append(conns, pc.(*net.UDPConn))
	}
	if steer {
		rc, err := conns[0].SyscallConn()
		if err == nil {
			err = reuse.AttachCBPFRandom(rc, slots)
		}
		if err != nil {
			return nil, fmt.Errorf("udp: steering: %w", err)
		}
	}
	for len(conns) > 0 {
		c := conns[0]
		conns = conns[1:]
		if err := g.held.Add(c); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// OpenReusePortSlot binds one socket, slot's, of a new group; the other
// slots get theirs from FD when they need one, so no socket is in the
// kernel's group unless some worker reads it. With steer the group's
// steering program always spreads over the sockets there are.
func OpenReusePortSlot(ctx context.Context, network, address string, slot int, steer bool) (*ReusePortGroup, error) {
	if slot < 0 {
		return nil, fmt.Errorf("udp: negative slot %d", slot)
	}
	lc := reuse.ListenConfig()
	pc, err := lc.ListenPacket(ctx, network, address)
	if err != nil {
		return nil, err
	}
	g := &ReusePortGroup{network: network, addr: pc.LocalAddr(), steer: steer}
	if err := g.held.Put(slot, pc.(*net.UDPConn)); err != nil {
		return nil, err
	}
	if err := g.resteerLocked(); err != nil {
		g.Close()
		return nil, err
	}
	return g, nil
}

// AdoptReusePortSlot makes c, a socket bound with SO_REUSEPORT elsewhere
// (systemd's socket activation), slot's socket of a new group; the other
// slots bind beside it. The group owns c from now on, whatever happens.
func AdoptReusePortSlot(c *net.UDPConn, slot int, steer bool) (*ReusePortGroup, error) {
	if slot < 0 {
		c.Close()
		return nil, fmt.Errorf("udp: negative slot %d", slot)
	}
	g := &ReusePortGroup{network: c.LocalAddr().Network(), addr: c.LocalAddr(), steer: steer}
	if err := g.held.Put(slot, c); err != nil {
		return nil, err
	}
	if err := g.resteerLocked(); err != nil {
		g.Close()
		return nil, err
	}
	return g, nil
}

// Addr is the address of every socket of the group.
func (g *ReusePortGroup) Addr() net.Addr { return g.addr }

// FD returns slot's descriptor; it stays owned by the group. A slot that
// has none yet, or was released, gets a fresh socket (and the
// steering program, if any, is told the new member count). The descriptor
// is not in this process's netpoller: datagrams for it do not wake this
// process, and only the workers it is sent to read it.
func (g *ReusePortGroup) FD(slot int) (int, error) {
	fd, opened, err := g.held.FDOrOpen(slot, func() (sockfd.Conn, error) {
		lc := reuse.ListenConfig()
		pc, err := lc.ListenPacket(context.Background(), g.network, g.addr.String())
		if err != nil {
			return nil, err
		}
		return pc.(*net.UDPConn), nil
	})
	if err != nil {
		return -1, fmt.Errorf("udp: slot %d: %w", slot, err)
	}
	if opened {
		g.mu.Lock()
		defer g.mu.Unlock()
		if err := g.resteerLocked(); err != nil {
			return -1, err
		}
	}
	return fd, nil
}

// Release takes slot's socket out of the group: the kernel stops giving it
// datagrams, and those queued on it are discarded. A later FD of the slot
// opens a fresh socket.
func (g *ReusePortGroup) Release(slot int) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	fd, err := g.held.Take(slot)
	if err != nil {
		return fmt.Errorf("udp: release slot %d: %w", slot, err)
	}
	if err := sockfd.CloseFD(fd); err != nil {
		return fmt.Errorf("udp: release slot %d: %w", slot, err)
	}
	return g.resteerLocked()
}

// resteerLocked re-attaches the steering program for the current number of
// members: it returns an index below that count, and the kernel renumbers
// the members when one leaves (the last takes its place).
func (g *ReusePortGroup) resteerLocked() error {
	if !g.steer {
		return nil
	}
	n, fd := g.held.Live()
	if n == 0 {
		return nil
	}
	if err := reuse.AttachCBPFRandom(rawFD(fd), n); err != nil {
		return fmt.Errorf("udp: steering: %w", err)
	}
	return nil
}

// rawFD is a syscall.RawConn over a descriptor owned elsewhere.
type rawFD int

func (fd rawFD) Control(f func(uintptr)) error  { f(uintptr(fd)); return nil }
func (fd rawFD) Read(func(uintptr) bool) error  { return errors.ErrUnsupported }
func (fd rawFD) Write(func(uintptr) bool) error { return errors.ErrUnsupported }

// Close closes every socket of the group.
func (g *ReusePortGroup) Close() error { return g.held.Close() }
