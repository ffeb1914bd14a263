package udp_test

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockshare/sockshare/internal/sockfd"
	"github.com/sockshare/sockshare/internal/sockfd/sockfdtest"
	"github.com/sockshare/sockshare/reuse"
	"github.com/sockshare/sockshare/udp"
)

// openFDs counts this process's descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count fds: %v", err)
	}
	return len(ents)
}

// readerOf gives the caller its own *net.UDPConn on fd, as a worker gets
// one: a duplicate, through FilePacketConn.
func readerOf(t *testing.T, fd int) *net.UDPConn {
	t.Helper()
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	c, err := udp.FilePacketConn(dup)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// The master holds its sockets but never reads them: none may be in its
// netpoller, or every datagram would wake it.
func TestHeldSocketsAreNotPolled(t *testing.T) {
	ctx := context.Background()
	s, err := sockfd.ListenPacket(ctx, "udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	g, err := udp.NewReusePortGroup(ctx, "udp4", "127.0.0.1:0", 3, false)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	held := map[string]int{}
	fd, _ := s.FD()
	held["shared"] = fd
	for slot := range 3 {
		fd, _ := g.FD(slot)
		held["reuseport slot "+strconv.Itoa(slot)] = fd
	}
	// A socket that Go does poll, to show the check can see one.
	probe, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	var probeFD int
	rc, _ := probe.SyscallConn()
	rc.Control(func(u uintptr) { probeFD = int(u) })

	// Compare sockets, not descriptor numbers: a duplicate of a polled
	// descriptor is the same socket, and it would wake us just the same.
	polledSockets := sockfdtest.PolledSockets(t)
	if _, ok := polledSockets[sockfdtest.SocketOf(probeFD)]; !ok {
		t.Fatalf("a net.UDPConn (fd %d) is not among the polled sockets %v: cannot check", probeFD, polledSockets)
	}
	for name, fd := range held {
		if pfd, ok := polledSockets[sockfdtest.SocketOf(fd)]; ok {
			t.Errorf("%s socket (fd %d) is in this process's netpoller as fd %d", name, fd, pfd)
		}
	}
}

// socketOf names the file behind fd, "socket:[inode]" for a socket.
func TestSharedServesOneSocketToEverySlot(t *testing.T) {
	before := openFDs(t)
	s, err := sockfd.ListenPacket(context.Background(), "udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fd, err := s.FD()
	if err != nil {
		t.Fatal(err)
	}
	// Two readers of the one socket: a datagram reaches exactly one.
	a, b := readerOf(t, fd), readerOf(t, fd)
	client, err := net.DialUDP("udp4", nil, s.Addr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, err := client.Write([]byte("one")); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 2)
	for _, c := range []*net.UDPConn{a, b} {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		go func() {
			buf := make([]byte, 16)
			n, _, err := c.ReadFromUDP(buf)
			if err != nil {
				got <- ""
				return
			}
			got <- string(buf[:n])
		}()
	}
	if first := <-got; first != "one" {
		t.Fatalf("first reader got %q, want the datagram", first)
	}
	// The other reader must time out, not get a copy: cut it short.
	a.SetReadDeadline(time.Now())
	b.SetReadDeadline(time.Now())
	if second := <-got; second != "" {
		t.Fatalf("both readers got the datagram (%q)", second)
	}
	a.Close()
	b.Close()
	client.Close()

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.FD(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("FD after Close: %v, want net.ErrClosed", err)
	}
	if after := openFDs(t); after != before {
		t.Fatalf("%d descriptors before, %d after Close", before, after)
	}
}

func TestReusePortGroupSlots(t *testing.T) {
	before := openFDs(t)
	g, err := udp.NewReusePortGroup(context.Background(), "udp4", "127.0.0.1:0", 3, false)
	if err != nil {
		t.Fatal(err)
	}
	if port := g.Addr().(*net.UDPAddr).Port; port == 0 {
		t.Fatal("port 0 was not resolved")
	}
	seen := map[int]bool{}
	for slot := range 3 {
		fd, err := g.FD(slot)
		if err != nil {
			t.Fatal(err)
		}
		if seen[fd] {
			t.Fatalf("slot %d shares descriptor %d with another slot", slot, fd)
		}
		seen[fd] = true
		// Every slot socket is bound to the group's address.
		sa, err := unix.Getsockname(fd)
		if err != nil {
			t.Fatal(err)
		}
		if in4, ok := sa.(*unix.SockaddrInet4); !ok || in4.Port != g.Addr().(*net.UDPAddr).Port {
			t.Fatalf("slot %d is bound to %#v, want port %d", slot, sa, g.Addr().(*net.UDPAddr).Port)
		}
	}
	if _, err := g.FD(-1); err == nil {
		t.Error("FD(-1) succeeded")
	}
	// A slot beyond the group gets its socket when it is first asked for
	// (the master opens slot sockets as workers of the slot listen).
	fd3, err := g.FD(3)
	if err != nil || seen[fd3] {
		t.Fatalf("FD(3) of a 3-slot group: %d, %v; want a fourth socket", fd3, err)
	}
	if again, _ := g.FD(3); again != fd3 {
		t.Fatalf("FD(3) again: %d, want %d", again, fd3)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := g.FD(0); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("FD after Close: %v, want net.ErrClosed", err)
	}
	if after := openFDs(t); after != before {
		t.Fatalf("%d descriptors before, %d after Close", before, after)
	}
}

// A failed bind leaves nothing open.
func TestReusePortGroupBindErrorLeaksNothing(t *testing.T) {
	busy, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	before := openFDs(t)
	_, err = udp.NewReusePortGroup(context.Background(), "udp4", busy.LocalAddr().String(), 2, false)
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("group on a port held without SO_REUSEPORT: %v, want EADDRINUSE", err)
	}
	_, err = sockfd.ListenPacket(context.Background(), "udp4", busy.LocalAddr().String())
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("shared socket on a port in use: %v, want EADDRINUSE", err)
	}
	if after := openFDs(t); after != before {
		t.Fatalf("%d descriptors before, %d after the failed binds", before, after)
	}
	if _, err := udp.NewReusePortGroup(context.Background(), "udp4", "127.0.0.1:0", 0, false); err == nil {
		t.Fatal("a group of 0 slots was created")
	}
}

// Under reuseport the kernel keeps each flow on one slot; with steering,
// one flow reaches every slot.
func TestReusePortGroupSteering(t *testing.T) {
	for _, steer := range []bool{false, true} {
		t.Run("steer="+strconv.FormatBool(steer), func(t *testing.T) {
			if steer && !reuse.Probe().CBPFSteering {
				t.Skip("no cBPF steering here")
			}
			const slots, total = 2, 400
			g, err := udp.NewReusePortGroup(context.Background(), "udp4", "127.0.0.1:0", slots, steer)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			arrived := make(chan int, total)
			for slot := range slots {
				fd, err := g.FD(slot)
				if err != nil {
					t.Fatal(err)
				}
				c := readerOf(t, fd)
				go func() {
					buf := make([]byte, 64)
					for {
						if _, _, err := c.ReadFromUDP(buf); err != nil {
							return // closed by the cleanup
						}
						arrived <- slot
					}
				}()
			}
			client, err := net.DialUDP("udp4", nil, g.Addr().(*net.UDPAddr))
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			counts := make([]int, slots)
			received := 0
			// Batches of 20, each waited for (a lost one for a second at
			// most), so that no receive buffer overflows.
			for sent := 0; sent < total; {
				for range 20 {
					client.Write([]byte("x"))
					sent++
				}
				timeout := time.After(time.Second)
			wait:
				for received < sent {
					select {
					case s := <-arrived:
						counts[s]++
						received++
					case <-timeout:
						break wait
					}
				}
			}
			t.Logf("one flow, per slot: %v", counts)
			if received < total/2 {
				t.Fatalf("only %d of %d datagrams arrived", received, total)
			}
			spread := counts[0] > 0 && counts[1] > 0
			if steer && (counts[0]*100 < received*35 || counts[1]*100 < received*35) {
				t.Errorf("steered flow split %v, want each slot 35%% or more", counts)
			}
			if !steer && spread {
				t.Errorf("one flow without steering reached both slots: %v", counts)
			}
		})
	}
}

// FilePacketConn takes the descriptor: it is closed whatever the result.
func TestFilePacketConnOwnsDescriptor(t *testing.T) {
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var fd int
	rc, _ := pc.SyscallConn()
	rc.Control(func(u uintptr) { fd, _ = unix.FcntlInt(u, unix.F_DUPFD_CLOEXEC, 0) })
	c, err := udp.FilePacketConn(fd)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
		t.Fatalf("descriptor %d still open after FilePacketConn: %v", fd, err)
	}
	if c.LocalAddr().String() != pc.LocalAddr().String() {
		t.Fatalf("conn on %v, want %v", c.LocalAddr(), pc.LocalAddr())
	}

	// A datagram socket that is not UDP is refused, and closed too.
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pair[1])
	if c, err := udp.FilePacketConn(pair[0]); err == nil {
		c.Close()
		t.Fatal("FilePacketConn accepted a unix datagram socket")
	}
	if _, err := unix.FcntlInt(uintptr(pair[0]), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
		t.Fatalf("refused descriptor %d still open: %v", pair[0], err)
	}
}
