package udp

import (
	"context"
	"fmt"
	"github.com/sockshare/sockshare/internal/sockfd"
	"net"
	"os"

	"github.com/sockshare/sockshare/reuse"
)

// ReusePortGroup is one SO_REUSEPORT UDP socket per worker slot, bound to
// one address, created in slot order (the order cBPF steering indexes).
// The group owns the sockets and keeps them out of this process's
// netpoller (see [ReusePortGroup.FD]).
type ReusePortGroup struct {
	addr net.Addr
	held sockfd.Group // by slot: never read here
}

// NewReusePortGroup binds slots sockets to address. With steer, it attaches
// a cBPF program that picks a random member for every datagram; where that
// is unsupported it fails with an error wrapping reuse.ErrUnsupported.
func NewReusePortGroup(ctx context.Context, network, address string, slots int, steer bool) (_ *ReusePortGroup, err error) {
	if slots < 1 {
		return nil, fmt.Errorf("udp: reuseport group needs at least one slot, got %d", slots)
	}
	var conns []*net.UDPConn // open, not yet held
	g := &ReusePortGroup{}
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

// Addr is the address of every socket of the group.
func (g *ReusePortGroup) Addr() net.Addr { return g.addr }

// FD returns slot's descriptor; it stays owned by the group. A slot beyond
// the group is an error (steering needs a fixed group). The descriptor is
// not in this process's netpoller: datagrams for it do not wake this
// process, and only the workers it is sent to read it.
func (g *ReusePortGroup) FD(slot int) (int, error) {
	fd, err := g.held.FD(slot)
	if err != nil {
		return -1, fmt.Errorf("udp: %w", err)
	}
	return fd, nil
}

// Close closes every socket of the group.
func (g *ReusePortGroup) Close() error { return g.held.Close() }

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
