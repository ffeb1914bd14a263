//go:build linux

package main

import (
	"os"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestReloadSoak reloads Python workers under load again and again, under
// every policy a foreign program can have: not one request may fail.
// Long: it runs only with SOCKSHARE_LONG=1; SOCKSHARE_SOAK_RELOADS sets the
// reloads per policy (default 25).
func TestReloadSoak(t *testing.T) {
	if os.Getenv("SOCKSHARE_LONG") == "" {
		t.Skip("a soak: set SOCKSHARE_LONG=1 to run it")
	}
	reloads := 25
	if s := os.Getenv("SOCKSHARE_SOAK_RELOADS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("SOCKSHARE_SOAK_RELOADS=%q: want a positive number", s)
		}
		reloads = n
	}
	for _, v := range foreignVariants {
		t.Run(v.String(), func(t *testing.T) {
			needCommand(t, "python3")
			v.need(t)
			r := startRunner(t, runArgs(v, pythonKind)...)
			addr := r.listening(v.policy, 2)

			var ok, failed atomic.Int64
			var firstErr atomic.Value
			stop := make(chan struct{})
			deadline := time.Now().Add(time.Duration(reloads) * 30 * time.Second)
			var wg sync.WaitGroup
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for time.Now().Before(deadline) {
						select {
						case <-stop:
							return
						default:
						}
						if a := get(addr, "/"); a.err != nil {
							failed.Add(1)
							firstErr.CompareAndSwap(nil, a.err.Error())
						} else {
							ok.Add(1)
						}
					}
				}()
			}
			for i := 1; i <= reloads; i++ {
				r.signal(syscall.SIGHUP)
				if n := r.waitCount(r.stderr, reloadRE, i, 30*time.Second); n < i {
					t.Fatalf("reload %d did not end within 30s\n%s", i, r.output())
				}
			}
			close(stop)
			wg.Wait()
			for _, l := range r.stderr.lines() {
				if m := reloadRE.FindStringSubmatch(l); m != nil && m[1] != "done" {
					t.Errorf("a reload failed: %s", l)
				}
			}
			t.Logf("%s: %d reloads, %d requests answered, %d failed", v, reloads, ok.Load(), failed.Load())
			if failed.Load() > 0 {
				t.Errorf("%d requests failed across %d reloads; first: %v", failed.Load(), reloads, firstErr.Load())
			}
			r.stop()
		})
	}
}

// waitCount waits until n lines of l match re, at most timeout, and
// returns how many do.
func (r *runnerProc) waitCount(l *lineLog, re *regexp.Regexp, n int, timeout time.Duration) int {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		lines, eof, more := l.snapshot()
		count := 0
		for _, s := range lines {
			if re.MatchString(s) {
				count++
			}
		}
		if count >= n || eof {
			return count
		}
		select {
		case <-more:
		case <-deadline.C:
			return count
		}
	}
}
