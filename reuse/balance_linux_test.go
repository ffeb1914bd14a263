package reuse_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sockshare/sockshare/reuse"
)

// testDeadline bounds every blocking step, so a broken kernel or a bug ends
// the test with a failure instead of a hang.
const testDeadline = 20 * time.Second

func TestTCPConnectionsSpreadOverGroup(t *testing.T) {
	const conns = 400
	first, err := reuse.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := first.Addr().String()
	second, err := reuse.Listen("tcp4", addr)
	if err != nil {
		first.Close()
		t.Fatal(err)
	}
	listeners := []net.Listener{first, second}

	accepted := make(chan int, conns)
	var wg sync.WaitGroup
	for i, ln := range listeners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return // closed at the end of the test
				}
				c.Close()
				accepted <- i
			}
		}()
	}
	defer func() {
		for _, ln := range listeners {
			ln.Close()
		}
		wg.Wait()
	}()

	// Each dial comes from a new ephemeral port, so each is a new 4-tuple
	// and a new draw of the kernel's hash.
	d := net.Dialer{Timeout: testDeadline}
	for range conns {
		c, err := d.Dial("tcp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}

	counts := make([]int, len(listeners))
	timeout := time.After(testDeadline)
	for range conns {
		select {
		case i := <-accepted:
			counts[i]++
		case <-timeout:
			t.Fatalf("accepted %v of %d connections before the deadline", counts, conns)
		}
	}
	for i, n := range counts {
		if n*5 <= conns {
			t.Errorf("listener %d accepted %d of %d connections (%v), want > 20%%", i, n, conns, counts)
		}
	}
	t.Logf("accepted per listener: %v", counts)
}

// udpGroup binds n UDP sockets to one loopback port, in order: socket i has
// index i in the group.
func udpGroup(t *testing.T, n int) []net.PacketConn {
	t.Helper()
	group := make([]net.PacketConn, 0, n)
	addr := "127.0.0.1:0"
	for range n {
		pc, err := reuse.ListenPacket("udp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		addr = pc.LocalAddr().String()
		group = append(group, pc)
	}
	return group
}

// sendOneFlow sends count datagrams from a single client socket to the group's
// address and returns how many each member received. It sends in small
// batches and waits for each batch to arrive before the next, so the
// receive buffers never overflow; a batch that loses datagrams on loopback
// is given up after a short grace period. It closes the group's sockets.
func sendOneFlow(t *testing.T, group []net.PacketConn, count int) []int {
	t.Helper()
	const (
		batch = 50
		grace = time.Second
	)
	got := make(chan int, count)
	var wg sync.WaitGroup
	for i, pc := range group {
		if err := pc.SetReadDeadline(time.Now().Add(testDeadline)); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 64)
			for {
				if _, _, err := pc.ReadFrom(buf); err != nil {
					return // closed below, or past the deadline
				}
				select {
				case got <- i:
				default: // a stray datagram beyond count: ignore it
				}
			}
		}()
	}

	client, err := net.DialUDP("udp4", nil, group[0].LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	counts := make([]int, len(group))
	sent, received := 0, 0
	payload := []byte("datagram")
	for sent < count {
		for b := 0; b < batch && sent < count; b++ {
			if _, err := client.Write(payload); err != nil {
				t.Fatalf("send datagram %d: %v", sent, err)
			}
			sent++
		}
		wait := time.NewTimer(grace)
	arrive:
		for received < sent {
			select {
			case i := <-got:
				counts[i]++
				received++
			case <-wait.C:
				break arrive // lost on loopback; count what arrived
			}
		}
		wait.Stop()
	}

	for _, pc := range group {
		pc.Close()
	}
	wg.Wait()
	for len(got) > 0 && received < count {
		counts[<-got]++
		received++
	}
	if received*2 < count {
		t.Fatalf("only %d of %d datagrams arrived (%v)", received, count, counts)
	}
	t.Logf("sent %d, received per socket: %v", count, counts)
	return counts
}

func TestUDPSingleFlowReachesOneSocket(t *testing.T) {
	counts := sendOneFlow(t, udpGroup(t, 2), 1000)
	if counts[0] != 0 && counts[1] != 0 {
		t.Fatalf("one flow without cBPF reached both sockets: %v; the kernel's hash should pin it to one", counts)
	}
}

func TestUDPSingleFlowSpreadsWithCBPF(t *testing.T) {
	group := udpGroup(t, 2)
	// Any member attaches the program for the whole group: use the last.
	rc, err := group[1].(*net.UDPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := reuse.AttachCBPFRandom(rc, 2); err != nil {
		t.Fatal(err)
	}
	counts := sendOneFlow(t, group, 1000)
	total := counts[0] + counts[1]
	for i, n := range counts {
		if share := float64(n) / float64(total); share < 0.35 || share > 0.65 {
			t.Errorf("socket %d got %d of %d datagrams (%.0f%%), want 35%%..65%%", i, n, total, 100*share)
		}
	}
}

func TestAttachCBPFRandomNeedsReusePortSocket(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	rc, err := pc.(*net.UDPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	err = reuse.AttachCBPFRandom(rc, 2)
	if !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("attach to a socket bound without SO_REUSEPORT: %v, want EINVAL", err)
	}
}

// A socket with SO_REUSEADDR but not SO_REUSEPORT must not join a UDP group:
// on Linux, had the group's sockets kept go-reuseport's SO_REUSEADDR, such a
// socket, of any user, would bind and receive every unicast datagram.
func TestUDPGroupRefusesReuseAddrIntruder(t *testing.T) {
	group := udpGroup(t, 2)
	addr := group[0].LocalAddr().String()
	intruder := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var setErr error
		if err := c.Control(func(fd uintptr) {
			setErr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
		}); err != nil {
			return err
		}
		return setErr
	}}
	pc, err := intruder.ListenPacket(context.Background(), "udp4", addr)
	if err == nil {
		pc.Close()
		t.Fatalf("a SO_REUSEADDR socket bound %s next to a reuseport group", addr)
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("SO_REUSEADDR socket on %s: %v, want EADDRINUSE", addr, err)
	}
}
