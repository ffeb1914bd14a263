package tcp

import (
	"context"
	"net"

	"github.com/sockshare/sockshare/internal/sockfd"
)

// Shared is the master side of the shared strategy: one listening socket,
// bound once, whose descriptor every slot gets, so every worker accepts
// from the same queue. The master never accepts on it and keeps it out of
// its netpoller, so incoming connections do not wake the master.
type Shared struct {
	*sockfd.Held
}

// NewShared listens on address with no sharing option: the workers share
// the socket itself, not the address.
func NewShared(ctx context.Context, network, address string) (*Shared, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, network, address)
	if err != nil {
		return nil, err
	}
	h, err := sockfd.Hold(ln.(*net.TCPListener), ln.Addr())
	if err != nil {
		return nil, err
	}
	return &Shared{h}, nil
}

// FD returns the listening descriptor, the same for every slot; it stays
// owned by s.
func (s *Shared) FD(slot int) (int, error) { return s.Held.FD() }
