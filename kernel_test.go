//go:build linux

package sockshare_test

import (
	"slices"
	"testing"

	"github.com/sockshare/sockshare"
)

// TestKernelRoundRobin: under kernel dispatch rr spreads short connections
// evenly without the master accepting any: its dispatcher counts none, the
// program's per-slot counters account for every one, and the workers'
// counts differ by at most 1% of the total (the program runs again for a
// SYN it already chose a slot for when the client retransmits it, or when
// the SYN meets a TIME_WAIT socket; docs/KERNEL.md).
func TestKernelRoundRobin(t *testing.T) {
	v := variant{"rr-kernel", "rr", sockshare.DispatchKernel}
	v.run(t, func(t *testing.T) {
		c := startCluster(t, sockshare.Config{Workers: 2, Policy: "rr", Dispatch: v.dispatch}, "http")
		const n = 1000
		per, errs := tally(load(c.addr, "/", n, 8))
		if len(errs) > 0 {
			t.Fatalf("%d of %d failed, first %v", len(errs), n, errs[0])
		}
		counts := mapValues(per)
		if len(counts) != 2 || slices.Max(counts)-slices.Min(counts) > n/100 {
			t.Errorf("per worker %v; want 2 workers within %d of each other", per, n/100)
		}
		ls := c.m.Listeners()
		if len(ls) != 1 {
			t.Fatalf("Listeners() = %+v", ls)
		}
		l := ls[0]
		var chosen uint64
		for _, x := range l.Chosen {
			chosen += x
		}
		if l.Dispatch != sockshare.DispatchKernel || l.Accepted != 0 || chosen < n || len(l.Chosen) != 2 {
			t.Errorf("Listeners()[0] = %+v; want dispatch kernel, nothing accepted by the master, at least %d chosen over 2 slots", l, n)
		}
		t.Logf("per worker %v, chosen per slot %v", per, l.Chosen)
	})
}
