package udp

import (
	"context"
	"github.com/sockshare/sockshare/internal/sockfd"
	"net"
	"sync"
)

// Shared is the master side of the shared strategy: one socket, bound once,
// whose descriptor every slot gets, so that every worker reads the same
// receive queue. Like [ReusePortGroup] it owns the socket and keeps it out
// of this process's netpoller.
type Shared struct {
	mu     sync.Mutex
	addr   net.Addr
	fd     int // held: never read here
	closed bool
}

// NewShared binds address with no sharing option: the workers share the
// socket itself, not the address.
func NewShared(ctx context.Context, network, address string) (*Shared, error) {
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, network, address)
	if err != nil {
		return nil, err
	}
	addr := pc.LocalAddr()
	fd, err := sockfd.HoldFD(pc.(*net.UDPConn))
	if err != nil {
		return nil, err
	}
	return &Shared{addr: addr, fd: fd}, nil
}

// Addr is the bound address, with the real port.
func (s *Shared) Addr() net.Addr { return s.addr }

// FD returns the socket's descriptor, the same for every slot; it stays
// owned by s.
func (s *Shared) FD(slot int) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return -1, net.ErrClosed
	}
	return s.fd, nil
}

// Close closes the socket. Workers keep reading their own duplicates.
func (s *Shared) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return sockfd.CloseFD(s.fd)
}
