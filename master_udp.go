//go:build unix

package sockshare

import (
	"context"
	"net"

	"github.com/sockshare/sockshare/policy"
	"github.com/sockshare/sockshare/udp"
)

// openPacket binds a datagram group: one socket for shared, one per slot
// for reuseport (with optional cBPF steering). The master holds the
// sockets outside its netpoller: it never reads them, and datagrams must
// not wake it (see package udp).
func (m *Master) openPacket(g *group, network, address string) error {
	if _, err := net.ResolveUDPAddr(network, address); err != nil {
		return err
	}
	ctx := context.Background()
	if g.policy == policy.ReusePort {
		rp, err := udp.NewReusePortGroup(ctx, network, address, m.cfg.Workers, m.cfg.UDPSteering)
		if err != nil {
			return err
		}
		g.sockets, g.addr = rp, rp.Addr()
		return nil
	}
	s, err := udp.NewShared(ctx, network, address)
	if err != nil {
		return err
	}
	g.sockets, g.addr = s, s.Addr()
	return nil
}
