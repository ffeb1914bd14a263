package reuse_test

import (
	"os"
	"strings"
	"testing"

	"github.com/sockshare/sockshare/reuse"
)

func TestProbeLinux(t *testing.T) {
	c := reuse.Probe()
	t.Logf("%+v", c)
	if !c.ReusePort || !c.Balances || !c.CBPFSteering {
		t.Fatalf("Probe() = %+v, want ReusePort, Balances and CBPFSteering on Linux", c)
	}
	if c.Note != "" {
		t.Errorf("Probe().Note = %q, want none: nothing is degraded", c.Note)
	}
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_migrate_req")
	want := err == nil && strings.TrimSpace(string(b)) == "1"
	if c.MigrateReq != want {
		t.Errorf("Probe().MigrateReq = %v, but %s reads %q (err %v)", c.MigrateReq, "/proc/sys/net/ipv4/tcp_migrate_req", b, err)
	}
}
