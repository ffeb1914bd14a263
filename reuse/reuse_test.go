//go:build !plan9

package reuse_test

import (
	"errors"
	"net"
	"runtime"
	"syscall"
	"testing"

	"github.com/sockshare/sockshare/reuse"
)

func TestErrUnsupported(t *testing.T) {
	if !errors.Is(reuse.ErrUnsupported, errors.ErrUnsupported) {
		t.Fatal("ErrUnsupported does not wrap errors.ErrUnsupported")
	}
	if got, want := reuse.ErrUnsupported.Error(), "unsupported operation on "+runtime.GOOS; got != want {
		t.Fatalf("ErrUnsupported text = %q, want %q", got, want)
	}
}

// skipUnlessReusePort skips tests that need a working reuseport group.
func skipUnlessReusePort(t *testing.T) {
	t.Helper()
	if c := reuse.Probe(); !c.ReusePort {
		t.Skipf("no SO_REUSEPORT here: %s", c.Note)
	}
}

func TestListenSharesTCPPort(t *testing.T) {
	skipUnlessReusePort(t)
	first, err := reuse.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	addr := first.Addr().String()

	second, err := reuse.Listen("tcp4", addr)
	if err != nil {
		t.Fatalf("second listener on %s: %v", addr, err)
	}
	defer second.Close()
	if got := second.Addr().String(); got != addr {
		t.Fatalf("second listener bound %s, want %s", got, addr)
	}

	// A socket without SO_REUSEPORT cannot join the group.
	plain, err := net.Listen("tcp4", addr)
	if err == nil {
		plain.Close()
		t.Fatalf("plain net.Listen on %s succeeded next to a reuseport group", addr)
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("plain net.Listen on %s: %v, want EADDRINUSE", addr, err)
	}
}

func TestListenPacketSharesUDPPort(t *testing.T) {
	skipUnlessReusePort(t)
	first, err := reuse.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	addr := first.LocalAddr().String()

	second, err := reuse.ListenPacket("udp4", addr)
	if err != nil {
		t.Fatalf("second socket on %s: %v", addr, err)
	}
	defer second.Close()
	if got := second.LocalAddr().String(); got != addr {
		t.Fatalf("second socket bound %s, want %s", got, addr)
	}
}

func TestAttachCBPFRandomRejectsBadGroupSize(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	rc, err := pc.(*net.UDPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, -1, 1 << 16} {
		if err := reuse.AttachCBPFRandom(rc, n); err == nil {
			t.Errorf("AttachCBPFRandom(n=%d) = nil, want an error", n)
		}
	}
}
