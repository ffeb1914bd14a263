//go:build linux

package main

import (
	"fmt"
	"syscall"
	"testing"
	"time"
)

// Faults in combination: a worker crashes while a reload is under way.
// Whichever it was (an old worker, or a replacement before it was ready),
// the reload ends (done, or failed with the old worker kept), the slot
// comes back, both slots serve, and a stop leaves nothing.
func TestCrashDuringReload(t *testing.T) {
	for _, v := range foreignVariants[:2] {
		t.Run(v.String(), func(t *testing.T) {
			t.Parallel()
			needCommand(t, "python3")
			r := startRunner(t, runArgs(v, pythonKind)...)
			addr := r.listening(v.policy, 2)
			r.signal(syscall.SIGHUP)
			if a := get(addr, "/exit/1"); a.err != nil {
				t.Fatalf("GET /exit/1: %v", a.err)
			}
			r.waitLine(r.stderr, reloadRE, 30*time.Second)
			// The crashed slot restarts (100ms backoff): then two workers
			// answer again, none fails.
			eventually(t, 30*time.Second, "both slots serving after the crash", func() (bool, string) {
				per, errs := byWorker(requests(addr, 40, 4))
				return len(per) == 2 && len(errs) == 0, fmt.Sprintf("answers per worker %v, %d errors", per, len(errs))
			})
			r.stop()
		})
	}
}
