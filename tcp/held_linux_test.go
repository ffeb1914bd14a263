package tcp

import (
	"context"
	"fmt"
	"net"
	"testing"

	"github.com/sockshare/sockshare/internal/sockfd"
	"github.com/sockshare/sockshare/internal/sockfd/sockfdtest"
)

// The master holds shared and reuseport listening sockets but never
// accepts on them: none may be in its netpoller, or every connection would
// wake it.
func TestHeldListenersAreNotPolled(t *testing.T) {
	ctx := context.Background()
	s, err := sockfd.Listen(ctx, "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	g, err := NewReusePortGroup(ctx, "tcp4", "127.0.0.1:0", 3)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	held := map[string]int{}
	held["shared"], _ = s.FD()
	for slot := range 3 {
		held[fmt.Sprintf("reuseport slot %d", slot)], _ = g.FD(slot)
	}
	// A listener Go does poll, to show the check can see one.
	probe, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	probeFD, _ := listenerFD(probe.(*net.TCPListener))
	polled := sockfdtest.PolledSockets(t)
	if _, ok := polled[sockfdtest.SocketOf(probeFD)]; !ok {
		t.Fatalf("a net.TCPListener (fd %d) is not among the polled sockets %v: cannot check", probeFD, polled)
	}
	for name, fd := range held {
		if pfd, ok := polled[sockfdtest.SocketOf(fd)]; ok {
			t.Errorf("%s socket (fd %d) is in this process's netpoller as fd %d", name, fd, pfd)
		}
	}
	// Held, but listening: clients still connect.
	for _, addr := range []string{s.Addr().String(), g.Addr().String()} {
		c, err := net.Dial("tcp4", addr)
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		c.Close()
	}
}
