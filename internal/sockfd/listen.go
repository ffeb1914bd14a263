package sockfd

import (
	"context"
	"fmt"
	"net"
)

// Listen binds a TCP listening socket with no sharing option and holds it:
// the master side of the shared policy, where every worker gets the one
// socket and accepts from its queue.
func Listen(ctx context.Context, network, address string) (*Held, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, network, address)
	if err != nil {
		return nil, err
	}
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		ln.Close()
		return nil, fmt.Errorf("listen %s: not a TCP network", network)
	}
	return Hold(tl, ln.Addr())
}

// ListenPacket binds a UDP socket with no sharing option and holds it: the
// master side of the shared policy for datagrams, where every worker reads
// the one receive queue.
func ListenPacket(ctx context.Context, network, address string) (*Held, error) {
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, network, address)
	if err != nil {
		return nil, err
	}
	uc, ok := pc.(*net.UDPConn)
	if !ok {
		pc.Close()
		return nil, fmt.Errorf("listen %s: not a UDP network", network)
	}
	return Hold(uc, pc.LocalAddr())
}
