//go:build linux

package sockshare_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sockshare/sockshare"
	"github.com/sockshare/sockshare/policy"
	"github.com/sockshare/sockshare/reuse"
)

func init() {
	roles["inherit-http"] = inheritHTTPWorker
	roles["idle"] = idleWorker
}

// inheritHTTPWorker serves HTTP on the socket it inherited as fd 3, as a
// program that knows nothing of sockshare's Listen would, and says it is
// ready.
func inheritHTTPWorker() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	ln, err := net.FileListener(os.NewFile(3, "inherited"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "inherited listener:", err)
		return 2
	}
	sockshare.Ready()
	return serveHTTP(ctx, ln)
}

// idleWorker neither listens nor says it is ready; it exits on SIGTERM.
func idleWorker() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return 0
}

// startReady starts a master running role and waits until every worker is
// ready (WaitReady), not until they listen: workers that inherit their
// sockets never Listen.
func startReady(t *testing.T, cfg sockshare.Config, role string) *cluster {
	t.Helper()
	c := launch(t, cfg, role)
	m := c.m
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer wcancel()
	if err := m.WaitReady(wctx); err != nil {
		t.Fatalf("WaitReady: %v\nevents:\n%s", err, c.eventLog())
	}
	if ls := m.Listeners(); len(ls) > 0 {
		c.addr = ls[0].Addr
	}
	return c
}

// Config.Sockets: the master binds before any worker starts, and workers
// that only take fd 3 serve under shared, reuseport and kernel dispatch,
// every one of them.
func TestSocketsInherited(t *testing.T) {
	for _, v := range variants("shared", "reuseport") {
		if v.policy == "leastconn" {
			continue // kernel leastconn counts through Listen's listener
		}
		v.run(t, func(t *testing.T) {
			t.Parallel()
			c := startReady(t, sockshare.Config{
				Workers: 2, Policy: v.policy, Dispatch: v.dispatch,
				Sockets: []sockshare.Socket{{Network: "tcp", Address: "127.0.0.1:0"}},
			}, "inherit-http")
			if !(sockshare.Socket{Network: "tcp"}).Inherited(policy.Name(v.policy), c.m.Dispatch()) {
				t.Fatalf("Inherited(%s, %s) = false", v.policy, c.m.Dispatch())
			}
			ls := c.m.Listeners()
			if len(ls) != 1 || strings.HasSuffix(ls[0].Addr, ":0") {
				t.Fatalf("Listeners() = %+v; want the one bound socket", ls)
			}
			per, errs := tally(load(c.addr, "/", 60, 4))
			if len(errs) > 0 {
				t.Fatalf("%d of 60 requests failed, first: %v", len(errs), errs[0])
			}
			if len(per) != 2 {
				t.Errorf("answers per worker %v; want both workers", per)
			}
		})
	}
}

// Under rr with master dispatch there is no socket to inherit: a worker
// built with the library reaches the same group with Listen on the
// Socket's network and address.
func TestSocketsJoinedByListen(t *testing.T) {
	c := startReady(t, sockshare.Config{
		Workers: 2, Policy: "rr", Dispatch: sockshare.DispatchMaster,
		Sockets: []sockshare.Socket{{Network: "tcp", Address: "127.0.0.1:0"}},
	}, "http") // Listen("tcp", SOCKSHARE_TEST_ADDR or "127.0.0.1:0")
	if (sockshare.Socket{Network: "tcp"}).Inherited(policy.RR, sockshare.DispatchMaster) {
		t.Fatal("Inherited(rr, master) = true")
	}
	if ls := c.m.Listeners(); len(ls) != 1 || ls[0].Dispatch != sockshare.DispatchMaster {
		t.Fatalf("Listeners() = %+v; want the one socket, dispatched by the master", ls)
	}
	per, errs := tally(load(c.addr, "/", 40, 4))
	if len(errs) > 0 || per["1"] != 20 || per["2"] != 20 {
		t.Fatalf("answers per worker %v, %d errors; want 20 each", per, len(errs))
	}
}

// A bad Socket is a configuration error naming it; a port in use fails
// Run before any worker starts.
func TestSocketsBadInput(t *testing.T) {
	for _, s := range []sockshare.Socket{
		{Network: "unix", Address: "/tmp/x"},
		{Network: "tcp", Address: "no-port"},
	} {
		_, err := sockshare.NewMaster(sockshare.Config{Workers: 1, Sockets: []sockshare.Socket{s}})
		if !errors.Is(err, sockshare.ErrBadConfig) || !strings.Contains(err.Error(), "Sockets[0]") {
			t.Errorf("NewMaster with %+v: %v; want ErrBadConfig naming Sockets[0]", s, err)
		}
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	var forks atomic.Int32
	m, err := sockshare.NewMaster(sockshare.Config{
		Workers: 1, Policy: "shared", Program: os.Args[0], Args: []string{}, Env: append(os.Environ(), roleEnv+"=idle"),
		Sockets: []sockshare.Socket{{Network: "tcp", Address: busy.Addr().String()}},
		OnEvent: func(e sockshare.Event) {
			if e.Type == sockshare.EventFork {
				forks.Add(1)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = m.Run(ctx)
	if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), busy.Addr().String()) || forks.Load() != 0 {
		t.Fatalf("Run on a port in use: %v after %d forks; want EADDRINUSE naming the address, no worker", err, forks.Load())
	}
}

// Config.Readiness decides readiness for workers that never Listen: nil
// makes them ready, an error kills them as a crash carrying it.
func TestReadinessHook(t *testing.T) {
	t.Run("ready", func(t *testing.T) {
		t.Parallel()
		c := startReady(t, sockshare.Config{Workers: 2, Readiness: func(ctx context.Context, w sockshare.WorkerInfo) error {
			if w.PID <= 0 || w.ID <= 0 {
				return fmt.Errorf("bad info %+v", w)
			}
			return nil
		}}, "idle")
		for _, w := range c.m.Workers() {
			if w.State != sockshare.StateReady {
				t.Errorf("worker %d is %v, want ready", w.ID, w.State)
			}
		}
	})
	t.Run("error", func(t *testing.T) {
		t.Parallel()
		c := &cluster{t: t, done: make(chan error, 1), notify: make(chan struct{}, 1)}
		m, err := sockshare.NewMaster(sockshare.Config{
			Workers: 1, Program: os.Args[0], Args: []string{}, Env: append(os.Environ(), roleEnv+"=idle"),
			OnEvent: c.record, MaxCrashes: 1, Logger: slog.New(slog.DiscardHandler),
			Readiness: func(ctx context.Context, w sockshare.WorkerInfo) error { return errors.New("no READY=1") },
		})
		if err != nil {
			t.Fatal(err)
		}
		c.m = m
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := m.Run(ctx); !errors.Is(err, sockshare.ErrAllWorkersFailed) {
			t.Fatalf("Run = %v; want ErrAllWorkersFailed", err)
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, e := range c.events {
			if e.Type == sockshare.EventExit && !e.Asked && e.Err != nil && strings.Contains(e.Err.Error(), "no READY=1") {
				return
			}
		}
		t.Fatalf("no crash carrying the readiness error; events:\n%v", c.events)
	})
}

// Scale adds slots that serve at once and removes the highest ones: their
// workers drain and are not restarted, and under reuseport their sockets
// leave the group, so no connection waits on a slot nobody serves.
func TestScale(t *testing.T) {
	for _, tc := range []struct{ pol, role string }{
		{"rr", "http"}, {"reuseport", "http"}, {"reuseport", "inherit-http"}, {"shared", "inherit-http"},
	} {
		t.Run(tc.pol+"/"+tc.role, func(t *testing.T) {
			t.Parallel()
			c := startReady(t, sockshare.Config{
				Workers: 1, Policy: tc.pol, Dispatch: sockshare.DispatchMaster,
				Sockets: []sockshare.Socket{{Network: "tcp", Address: "127.0.0.1:0"}},
			}, tc.role)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := c.m.Scale(ctx, 3); err != nil {
				t.Fatalf("Scale(3): %v", err)
			}
			if err := c.m.WaitReady(ctx); err != nil {
				t.Fatal(err)
			}
			if n := c.m.NumWorkers(); n != 3 {
				t.Fatalf("NumWorkers() = %d after Scale(3)", n)
			}
			per, errs := tally(load(c.addr, "/", 90, 6))
			if len(errs) > 0 || len(per) != 3 {
				t.Fatalf("after Scale(3): answers per worker %v, %d errors; want 3 workers, none", per, len(errs))
			}
			if err := c.m.Scale(ctx, 1); err != nil {
				t.Fatalf("Scale(1): %v", err)
			}
			ws := c.m.Workers()
			if len(ws) != 1 || ws[0].Slot != 0 || c.m.NumWorkers() != 1 {
				t.Fatalf("after Scale(1): workers %+v, NumWorkers %d; want slot 0 only", ws, c.m.NumWorkers())
			}
			per, errs = tally(load(c.addr, "/", 60, 4))
			if len(errs) > 0 || len(per) != 1 {
				t.Fatalf("after Scale(1): answers per worker %v, %d errors (first %v); want one worker, none", per, len(errs), errs)
			}
			c.mu.Lock()
			for _, e := range c.events {
				if e.Type == sockshare.EventRestart {
					t.Errorf("a removed slot restarted: %v", e)
				}
			}
			c.mu.Unlock()
			if err := c.m.Scale(ctx, 0); !errors.Is(err, sockshare.ErrBadConfig) {
				t.Errorf("Scale(0) = %v; want ErrBadConfig", err)
			}
		})
	}
}

// A Socket.File (what systemd's socket activation passes) is served
// instead of binding: under shared and reuseport the workers inherit that
// very socket (reuseport binds the other slots beside it), under rr the
// master accepts on it. A reuseport File without SO_REUSEPORT is refused
// before any worker starts, naming the option.
func TestSocketsFromFile(t *testing.T) {
	for _, tc := range []struct{ pol, role string }{
		{"shared", "inherit-http"}, {"reuseport", "inherit-http"}, {"rr", "http"},
	} {
		t.Run(tc.pol, func(t *testing.T) {
			t.Parallel()
			var ln net.Listener
			var err error
			if tc.pol == "reuseport" {
				ln, err = reuse.Listen("tcp", "127.0.0.1:0")
			} else {
				ln, err = net.Listen("tcp", "127.0.0.1:0")
			}
			if err != nil {
				t.Fatal(err)
			}
			f, err := ln.(*net.TCPListener).File()
			ln.Close()
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			// A client that connects before the master exists waits in
			// the inherited socket's queue: answered only if that very
			// socket is served.
			early, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer early.Close()
			io.WriteString(early, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			c := startReady(t, sockshare.Config{
				Workers: 2, Policy: tc.pol, Dispatch: sockshare.DispatchMaster,
				Sockets: []sockshare.Socket{{Network: "tcp", Address: addr, File: f}},
				Env:     []string{addrEnv + "=" + addr},
			}, tc.role)
			f.Close() // the master holds its own duplicate
			early.SetReadDeadline(time.Now().Add(10 * time.Second))
			if resp, err := io.ReadAll(early); err != nil || !strings.HasPrefix(string(resp), "HTTP/1.1 200") {
				t.Fatalf("the connection queued before the master started: %q, %v; want it answered", resp, err)
			}
			if c.addr != addr {
				t.Fatalf("served %s, want the inherited socket's %s", c.addr, addr)
			}
			per, errs := tally(load(addr, "/", 60, 4))
			if len(errs) > 0 || len(per) != 2 {
				t.Fatalf("answers per worker %v, %d errors; want both workers, none", per, len(errs))
			}
		})
	}
	t.Run("reuseport without SO_REUSEPORT", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		f, err := ln.(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		m, err := sockshare.NewMaster(sockshare.Config{
			Workers: 2, Policy: "reuseport", Program: os.Args[0], Args: []string{}, Env: append(os.Environ(), roleEnv+"=idle"),
			Sockets: []sockshare.Socket{{Network: "tcp", Address: ln.Addr().String(), File: f}},
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := m.Run(ctx); err == nil || !strings.Contains(err.Error(), "SO_REUSEPORT") {
			t.Fatalf("Run = %v; want an error naming SO_REUSEPORT", err)
		}
	})
}

// Disconnect, Scale and Reload return once the exits they caused are
// handled: Workers no longer lists the worker, so a caller that looks right
// after sees what it asked for.
func TestDisconnectGoneFromWorkers(t *testing.T) {
	c := startCluster(t, sockshare.Config{Workers: 4, Policy: "shared"}, "http")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, w := range c.m.Workers() {
		if err := c.m.Disconnect(ctx, w.ID); err != nil {
			t.Fatalf("Disconnect(%d): %v", w.ID, err)
		}
		for _, o := range c.m.Workers() {
			if o.ID == w.ID {
				t.Fatalf("Workers() still lists worker %d (%v) after Disconnect returned", w.ID, o.State)
			}
		}
	}
}
