//go:build linux

package sockshare_test

import (
	"context"
	"errors"
	"net"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/sockshare/sockshare"
)

func init() {
	roles["crash-slot0"] = crashSlot0Worker
	roles["ignore-term"] = ignoreTermWorker
	roles["stall-all"] = stallAllWorker
}

// TestReloadUnderLoad: a rolling reload under continuous load replaces
// every worker and no request fails, under every policy.
func TestReloadUnderLoad(t *testing.T) {
	for _, v := range variants("shared", "rr", "leastconn", "reuseport") {
		v.run(t, func(t *testing.T) {
			t.Parallel() // own cluster and address; counts no descriptor
			c := startCluster(t, sockshare.Config{Workers: 2, Policy: v.policy, Dispatch: v.dispatch}, "http")
			before := c.m.Workers()
			stop := make(chan struct{})
			_, results := steadyLoad(c.addr, "/", 16, 0, stop)
			// Let the load reach every worker before reloading.
			if r := get(c.addr, "/"); r.err != nil {
				t.Fatal(r.err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			err := c.m.Reload(ctx)
			// Keep the load on the new workers for a few more requests.
			for range 50 {
				get(c.addr, "/")
			}
			close(stop)
			all := results()
			if err != nil {
				t.Fatalf("Reload: %v", err)
			}
			per, errs := tally(all)
			if len(errs) > 0 {
				t.Fatalf("%d of %d requests failed during the reload; first: %v", len(errs), len(all), errs[0])
			}
			after := c.m.Workers()
			if len(after) != 2 {
				t.Fatalf("workers after reload: %+v", after)
			}
			for _, a := range after {
				for _, b := range before {
					if a.PID == b.PID || a.ID == b.ID {
						t.Fatalf("worker %+v survived the reload", a)
					}
				}
			}
			t.Logf("%d requests, 0 failed, per worker %v", len(all), per)
		})
	}
}

// crashSlot0Worker exits 1 at once in slot 0 and serves HTTP elsewhere.
func crashSlot0Worker() int {
	if sockshare.Slot() == 0 {
		return 1
	}
	return httpWorker()
}

// TestCrashLoopGivenUp: a slot whose worker exits at start is restarted
// with growing delays, then given up; the master keeps serving.
func TestCrashLoopGivenUp(t *testing.T) {
	c := &cluster{t: t, done: make(chan error, 1), notify: make(chan struct{}, 1)}
	cfg := sockshare.Config{
		Workers: 2, Policy: "rr", Program: os.Args[0], Args: []string{},
		Env:          append(os.Environ(), roleEnv+"=crash-slot0"),
		RestartDelay: 10 * time.Millisecond, MaxRestartDelay: time.Second, MaxCrashes: 4,
		OnEvent: c.record,
	}
	m, err := sockshare.NewMaster(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.m = m
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	go func() { c.done <- m.Run(ctx) }()
	t.Cleanup(c.stop)
	var delays []time.Duration
	c.waitFor("slot 0 given up", 30*time.Second, func(evs []sockshare.Event, _ []string) bool {
		delays = delays[:0]
		for _, e := range evs {
			if e.Type == sockshare.EventRestart && e.Slot == 0 {
				delays = append(delays, e.Delay)
			}
			if e.Type == sockshare.EventGiveUp && e.Slot == 0 {
				return true
			}
		}
		return false
	})
	want := []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond}
	if !slices.Equal(delays, want) {
		t.Errorf("restart delays %v; want %v", delays, want)
	}
	c.waitFor("slot 1 listening", 30*time.Second, func(evs []sockshare.Event, _ []string) bool {
		for _, e := range evs {
			if e.Type == sockshare.EventListening && e.Slot == 1 {
				c.addr = e.Addr
				return true
			}
		}
		return false
	})
	per, errs := tally(load(c.addr, "/", 20, 4))
	if len(errs) > 0 || len(per) != 1 {
		t.Fatalf("after giving slot 0 up: per worker %v, errors %v", per, errs)
	}
	for _, w := range m.Workers() {
		if w.Slot == 0 {
			t.Fatalf("slot 0 still has a worker: %+v", w)
		}
	}
}

// ignoreTermWorker serves HTTP but ignores SIGTERM.
func ignoreTermWorker() int {
	signal.Ignore(syscall.SIGTERM)
	ln, err := sockshare.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 2
	}
	return serveHTTP(context.Background(), ln)
}

// TestDisconnectDeadlineKills: a worker that ignores SIGTERM is killed
// at the disconnect deadline, and its exit is reported as asked for.
func TestDisconnectDeadlineKills(t *testing.T) {
	c := startCluster(t, sockshare.Config{Workers: 1, Policy: "rr", ShutdownTimeout: 300 * time.Millisecond}, "ignore-term")
	w := c.m.Workers()[0]
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.m.Disconnect(ctx, w.ID); err != nil {
		t.Fatalf("Disconnect: %v", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 5*time.Second {
		t.Errorf("Disconnect took %v; want about the 300ms deadline", d)
	}
	var exit sockshare.Event
	c.waitFor("the exit event", 10*time.Second, func(evs []sockshare.Event, _ []string) bool {
		for _, e := range evs {
			if e.Type == sockshare.EventExit && e.WorkerID == w.ID {
				exit = e
				return true
			}
		}
		return false
	})
	if exit.Signal != syscall.SIGKILL || !exit.Asked {
		t.Fatalf("exit event %v; want killed, asked", exit)
	}
}

// stallAllWorker listens and never accepts.
func stallAllWorker() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	ln, err := sockshare.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 2
	}
	<-ctx.Done()
	ln.Close()
	return 0
}

// TestPendingQueueBounded: with every worker stalled, the master holds at
// most MaxPending connections plus the windows, and leaves the rest in the
// kernel backlog instead of growing.
func TestPendingQueueBounded(t *testing.T) {
	const window, maxPending = 4, 16
	c := startCluster(t, sockshare.Config{Workers: 2, Policy: "rr", Window: window, MaxPending: maxPending, ShutdownTimeout: time.Second}, "stall-all")
	var conns []interface{ Close() error }
	defer func() {
		for _, cn := range conns {
			cn.Close()
		}
	}()
	for range 300 {
		cn, err := dialTCP(c.addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, cn)
	}
	var li sockshare.ListenerInfo
	pollUntil(10*time.Second, func() bool {
		li = c.m.Listeners()[0]
		return li.Pending == maxPending && li.Inflight == 2*window
	})
	if li.Pending != maxPending || li.Inflight != 2*window {
		t.Fatalf("pending %d, inflight %d; want %d and %d", li.Pending, li.Inflight, maxPending, 2*window)
	}
	// The accept loop may take one batch beyond the bound before it
	// notices; everything else waits in the kernel backlog.
	if li.Accepted > maxPending+2*window+64 {
		t.Fatalf("the master accepted %d connections with every worker stalled; bound is %d", li.Accepted, maxPending+2*window+64)
	}
}

// TestShutdownDuringReloadLeavesNoWorker: cancelling Run while a reload
// starts replacements leaves no process behind, and Reload afterwards
// fails at once instead of hanging.
func TestShutdownDuringReloadLeavesNoWorker(t *testing.T) {
	c := startCluster(t, sockshare.Config{Workers: 2, Policy: "rr"}, "http")
	reloaded := make(chan error, 1)
	go func() { reloaded <- c.m.Reload(context.Background()) }()
	// Shut down as soon as the first replacement is forked.
	c.waitFor("a replacement fork", 20*time.Second, func(evs []sockshare.Event, _ []string) bool {
		for _, e := range evs {
			if e.Type == sockshare.EventFork && e.WorkerID > 2 {
				return true
			}
		}
		return false
	})
	c.stop()
	select {
	case <-reloaded:
	case <-time.After(20 * time.Second):
		t.Fatal("Reload still running 20s after the master stopped")
	}
	c.mu.Lock()
	var pids []int
	for _, e := range c.events {
		if e.Type == sockshare.EventFork {
			pids = append(pids, e.PID)
		}
	}
	c.mu.Unlock()
	for _, pid := range pids {
		// Workers are our children: reaped by the master, so kill(0)
		// fails once they are gone.
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("worker pid %d alive after Run returned", pid)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.m.Reload(ctx); err == nil || ctx.Err() != nil {
		t.Fatalf("Reload after Run returned: %v (ctx %v); want an immediate error", err, ctx.Err())
	}
}

// TestWaitReady: nil once every worker is ready; the first listen error
// as a *ListenError that errors.Is sees through; ErrStopped after Run.
func TestWaitReady(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := startCluster(t, sockshare.Config{Workers: 2, Policy: "reuseport"}, "http")
	if err := c.m.WaitReady(ctx); err != nil {
		t.Fatalf("WaitReady on a listening cluster: %v", err)
	}
	c.stop()
	if err := c.m.WaitReady(ctx); !errors.Is(err, sockshare.ErrStopped) {
		t.Fatalf("WaitReady after Run returned: %v; want ErrStopped", err)
	}

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	m, err := sockshare.NewMaster(sockshare.Config{Workers: 2, Policy: "rr", Program: os.Args[0], Args: []string{},
		Env: append(os.Environ(), roleEnv+"=http", addrEnv+"="+busy.Addr().String())})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- m.Run(runCtx) }()
	defer func() { stop(); <-ran }()
	var lerr *sockshare.ListenError
	err = m.WaitReady(ctx)
	if !errors.As(err, &lerr) || !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("WaitReady with the port in use: %v; want a *ListenError matching EADDRINUSE", err)
	}
	if want := "listen " + busy.Addr().String() + ": bind: address already in use"; err.Error() != want {
		t.Fatalf("error text %q; want %q", err, want)
	}
}
