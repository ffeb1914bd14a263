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

// FDOrOpen opens a socket for an empty slot or one beyond the end, once,
// and only there.
func TestFDOrOpen(t *testing.T) {
	var g Group
	defer g.Close()
	opens := 0
	open := func() (Conn, error) {
		opens++
		return net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	}
	fd2, opened, err := g.FDOrOpen(2, open)
	if err != nil || !opened || g.Len() != 3 {
		t.Fatalf("FDOrOpen(2) on an empty group = %d, %v, %v (len %d); want a socket, opened, len 3", fd2, opened, err, g.Len())
	}
	if fd, opened, err := g.FDOrOpen(2, open); fd != fd2 || opened || err != nil {
		t.Fatalf("FDOrOpen(2) again = %d, %v, %v; want %d without opening", fd, opened, err, fd2)
	}
	if _, err := g.FD(0); !errors.Is(err, ErrEmptySlot) {
		t.Fatalf("slot 0 between: %v, want ErrEmptySlot", err)
	}
	if _, opened, err := g.FDOrOpen(0, open); !opened || err != nil {
		t.Fatalf("FDOrOpen(0) of an empty slot: opened %v, %v", opened, err)
	}
	fail := errors.New("bind failed")
	if _, _, err := g.FDOrOpen(1, func() (Conn, error) { return nil, fail }); !errors.Is(err, fail) {
		t.Fatalf("a failing open: %v, want its error", err)
	}
	if _, _, err := g.FDOrOpen(-1, open); err == nil {
		t.Fatal("FDOrOpen(-1) succeeded")
	}
	if opens != 2 {
		t.Fatalf("%d opens, want 2", opens)
	}
	g.Close()
	if _, _, err := g.FDOrOpen(1, open); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("FDOrOpen after Close: %v, want net.ErrClosed", err)
	}
}
