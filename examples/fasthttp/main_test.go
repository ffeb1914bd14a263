package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sockshare/sockshare"
)

// The test binary is also the workers: the master below re-runs it.
func TestMain(m *testing.M) {
	if sockshare.IsWorker() {
		os.Exit(run(os.Args[1:], io.Discard, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestReloadNoFailedRequest: 64 keep-alive connections of a client that
// never retries (like wrk) see no failed request across two rolling
// reloads of the fasthttp workers, under every policy.
func TestReloadNoFailedRequest(t *testing.T) {
	for _, pol := range []string{"shared", "rr", "leastconn", "reuseport"} {
		t.Run(pol, func(t *testing.T) {
			cfg := config(options{workers: 2, policy: pol}, os.Stderr)
			cfg.Program = os.Args[0]
			cfg.Args = []string{"-addr", "127.0.0.1:0"}
			cfg.ShutdownTimeout = 10 * time.Second
			m, err := sockshare.NewMaster(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			ran := make(chan error, 1)
			go func() { ran <- m.Run(ctx) }()
			defer func() {
				cancel()
				if err := <-ran; err != nil {
					t.Errorf("Run: %v", err)
				}
			}()
			rctx, rcancel := context.WithTimeout(ctx, 60*time.Second)
			defer rcancel()
			if err := m.WaitReady(rctx); err != nil {
				t.Fatal(err)
			}
			addr := m.Listeners()[0].Addr

			var ok, closes atomic.Int64
			var mu sync.Mutex
			var failed []error
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for range 64 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var c net.Conn
					var br *bufio.Reader
					defer func() {
						if c != nil {
							c.Close()
						}
					}()
					for {
						select {
						case <-stop:
							return
						default:
						}
						if c == nil {
							var err error
							if c, err = net.DialTimeout("tcp", addr, 5*time.Second); err != nil {
								c = nil
								mu.Lock()
								failed = append(failed, err)
								mu.Unlock()
								continue
							}
							br = bufio.NewReader(c)
						}
						c.SetDeadline(time.Now().Add(20 * time.Second))
						close, err := getOnce(c, br)
						if err != nil {
							mu.Lock()
							failed = append(failed, err)
							mu.Unlock()
						} else {
							ok.Add(1)
						}
						if err != nil || close {
							closes.Add(1)
							c.Close()
							c = nil
						}
					}
				}()
			}

			var out strings.Builder
			start, d := time.Now(), time.Second
			var reloadErr error
			for _, at := range []time.Duration{d / 5, 3 * d / 5} {
				<-time.After(time.Until(start.Add(at)))
				if reloadErr = reload(rctx, m, &out); reloadErr != nil {
					break
				}
			}
			<-time.After(max(d/5, time.Until(start.Add(d))))
			close(stop)
			wg.Wait()
			if reloadErr != nil {
				t.Fatalf("reload: %v", reloadErr)
			}
			t.Logf("%s: 64 conns, 2 reloads: %d requests ok, %d failed, %d connections ended", pol, ok.Load(), len(failed), closes.Load())
			if len(failed) > 0 {
				t.Fatalf("%d requests failed; first: %v", len(failed), failed[0])
			}
			if got, want := out.String(), "reload: worker 1 → 3, 2 → 4\nreload: worker 3 → 5, 4 → 6\n"; got != want {
				t.Errorf("reload lines %q, want %q", got, want)
			}
		})
	}
}

// getOnce sends one GET on a keep-alive connection, never resent.
func getOnce(c net.Conn, br *bufio.Reader) (close bool, err error) {
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return false, fmt.Errorf("write: %w", err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return false, fmt.Errorf("read: %w", err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return false, fmt.Errorf("read body: %w", err)
	}
	if resp.StatusCode != 200 {
		return false, fmt.Errorf("status %d", resp.StatusCode)
	}
	return resp.Close, nil
}
