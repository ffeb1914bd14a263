package reuse_test

import (
	"errors"
	"testing"

	"github.com/sockshare/sockshare/reuse"
)

func TestListenRefusedOnWindows(t *testing.T) {
	ln, err := reuse.Listen("tcp4", "127.0.0.1:0")
	if err == nil {
		ln.Close()
		t.Fatal("Listen succeeded; windows must refuse SO_REUSEADDR sharing")
	}
	if !errors.Is(err, reuse.ErrUnsupported) || !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("Listen: %v, want ErrUnsupported", err)
	}
	pc, err := reuse.ListenPacket("udp4", "127.0.0.1:0")
	if err == nil {
		pc.Close()
		t.Fatal("ListenPacket succeeded; windows must refuse SO_REUSEADDR sharing")
	}
	if !errors.Is(err, reuse.ErrUnsupported) {
		t.Fatalf("ListenPacket: %v, want ErrUnsupported", err)
	}
}

func TestProbeWindows(t *testing.T) {
	c := reuse.Probe()
	if c.ReusePort || c.Balances || c.CBPFSteering || c.MigrateReq || c.Note == "" {
		t.Fatalf("Probe() = %+v, want nothing supported and a note", c)
	}
}
