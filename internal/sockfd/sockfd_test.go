//go:build linux

package sockfd

import (
	"errors"
	"github.com/sockshare/sockshare/internal/sockfd/sockfdtest"
	"net"
	"os"
	"testing"
)

func TestHoldLeavesThePoller(t *testing.T) {
	before, _ := os.ReadDir("/proc/self/fd")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h, err := Hold(ln.(*net.TCPListener), ln.Addr())
	if err != nil {
		t.Fatal(err)
	}
	fd, err := h.FD()
	if err != nil {
		t.Fatal(err)
	}
	// Compare sockets, not fd numbers: had Hold left the original open,
	// epoll would watch the original number, which names the same socket.
	if pfd, ok := sockfdtest.PolledSockets(t)[sockfdtest.SocketOf(fd)]; ok {
		t.Fatalf("the held socket (fd %d) is still watched by epoll as fd %d", fd, pfd)
	}
	// The socket is still open and listening: a client connects.
	c, err := net.Dial("tcp", h.Addr().String())
	if err != nil {
		t.Fatalf("dial the held listener: %v", err)
	}
	c.Close()
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := h.FD(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("FD after Close: %v", err)
	}
	after, _ := os.ReadDir("/proc/self/fd")
	if len(after) != len(before) {
		t.Fatalf("fds: %d before, %d after", len(before), len(after))
	}
}

func TestGroup(t *testing.T) {
	before, _ := os.ReadDir("/proc/self/fd")
	var g Group
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if err := g.Add(ln.(*net.TCPListener)); err != nil {
			t.Fatal(err)
		}
	}
	a, errA := g.FD(0)
	b, errB := g.FD(1)
	if errA != nil || errB != nil || a == b || g.Len() != 2 {
		t.Fatalf("FD(0)=%d,%v FD(1)=%d,%v Len=%d", a, errA, b, errB, g.Len())
	}
	if _, err := g.FD(2); err == nil {
		t.Fatal("FD(2) of a group of 2 succeeded")
	}
	if _, err := g.FD(-1); err == nil {
		t.Fatal("FD(-1) succeeded")
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := g.FD(0); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("FD after Close: %v", err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	if err := g.Add(ln.(*net.TCPListener)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Add after Close: %v", err)
	}
	after, _ := os.ReadDir("/proc/self/fd")
	if len(after) != len(before) {
		t.Fatalf("fds: %d before, %d after", len(before), len(after))
	}
}
