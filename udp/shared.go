package udp

import (
	"context"
	"net"

	"github.com/sockshare/sockshare/internal/sockfd"
)

// Shared is the master side of the shared strategy: one socket, bound once,
// whose descriptor every slot gets, so that every worker reads the same
// receive queue. Like [ReusePortGroup] it owns the socket and keeps it out
// of this process's netpoller. Close closes it; workers keep reading their
// own duplicates.
type Shared struct {
	*sockfd.Held
}

// NewShared binds address with no sharing option: the workers share the
// socket itself, not the address.
func NewShared(ctx context.Context, network, address string) (*Shared, error) {
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, network, address)
	if err != nil {
		return nil, err
	}
	h, err := sockfd.Hold(pc.(*net.UDPConn), pc.LocalAddr())
	if err != nil {
		return nil, err
	}
	return &Shared{h}, nil
}

// FD returns the socket's descriptor, the same for every slot; it stays
// owned by s.
func (s *Shared) FD(slot int) (int, error) { return s.Held.FD() }
