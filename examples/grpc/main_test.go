package main

import (
	"context"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/sockshare/sockshare"
)

// The test binary is also the workers: the master below re-runs it.
func TestMain(m *testing.M) {
	if sockshare.IsWorker() {
		os.Exit(run(os.Args[1:], io.Discard, os.Stderr))
	}
	os.Exit(m.Run())
}

// syncBuffer collects the master's stdout.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestReloadNoFailedCall: 16 gRPC clients making unary calls see no failed
// call across two rolling reloads, under every policy, and each reload
// prints which worker replaced which.
func TestReloadNoFailedCall(t *testing.T) {
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

			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			client := grpc_health_v1.NewHealthClient(conn)
			var (
				mu      sync.Mutex
				ok      int
				failed  []error
				workers = map[string]int{}
				wg      sync.WaitGroup
			)
			stop := make(chan struct{})
			for range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
						var md metadata.MD
						resp, err := client.Check(cctx, &grpc_health_v1.HealthCheckRequest{}, grpc.Header(&md))
						ccancel()
						mu.Lock()
						switch {
						case err != nil:
							failed = append(failed, err)
						case resp.GetStatus() != grpc_health_v1.HealthCheckResponse_SERVING:
							failed = append(failed, err)
						default:
							ok++
							if w := md.Get("x-worker"); len(w) == 1 {
								workers[w[0]]++
							}
						}
						mu.Unlock()
					}
				}()
			}

			var out syncBuffer
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
			t.Logf("%s: 2 reloads, %d calls ok, %d failed, per worker %v", pol, ok, len(failed), workers)
			if len(failed) > 0 {
				t.Fatalf("%d calls failed; first: %v", len(failed), failed[0])
			}
			if got, want := out.String(), "reload: worker 1 → 3, 2 → 4\nreload: worker 3 → 5, 4 → 6\n"; got != want {
				t.Errorf("reload lines %q, want %q", got, want)
			}
		})
	}
}
