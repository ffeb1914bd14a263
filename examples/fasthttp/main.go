// Command fasthttp is a fasthttp server whose workers share one address
// under a sockshare policy, and whose rolling reload (SIGHUP) fails no
// request, even for a client that never retries (wrk, ab -k).
//
//	go run ./examples/fasthttp [-workers N] [-policy P] [-addr host:port]
//
// Every response is "hello from worker <id>" with X-Worker: <id>. The
// master prints "listening on <addr> policy=<p> workers=<n>" once every
// worker listens and "reload: worker 1 → 3, 2 → 4" after each SIGHUP.
//
// sockshare.ServeHTTP is for net/http. fasthttp's own Shutdown has the
// keep-alive race ServeHTTP avoids: it closes idle keep-alive connections
// at once, under clients that may be sending their next request on them
// (CloseOnShutdown only helps the connections that still get a response).
// serve below drains the way ServeHTTP does, with fasthttp's API only.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sockshare/sockshare"
)

// drainWindow is how long a draining worker lets its keep-alive
// connections send one more request before it closes the idle ones.
const drainWindow = 5 * time.Second

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

type options struct {
	workers int
	policy  string
	addr    string
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fasthttp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.IntVar(&o.workers, "workers", 2, "number of worker processes")
	fs.StringVar(&o.policy, "policy", "", "sharing policy: shared, rr, leastconn, reuseport (default $SOCKSHARE_POLICY, else rr)")
	fs.StringVar(&o.addr, "addr", "127.0.0.1:8080", "address to listen on")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if sockshare.IsWorker() {
		ln, err := sockshare.Listen("tcp", o.addr)
		if err != nil {
			fmt.Fprintf(stderr, "fasthttp: worker: %v\n", err)
			return 1
		}
		id := strconv.Itoa(sockshare.WorkerID())
		body := []byte("hello from worker " + id + "\n")
		h := func(c *fasthttp.RequestCtx) {
			c.Response.Header.Set("X-Worker", id)
			c.Write(body)
		}
		if err := serve(ctx, &fasthttp.Server{Handler: h}, ln, drainWindow, 10*time.Second); err != nil {
			fmt.Fprintf(stderr, "fasthttp: worker: %v\n", err)
			return 1
		}
		return 0
	}
	m, err := sockshare.NewMaster(config(o, stderr))
	if err != nil {
		fmt.Fprintf(stderr, "fasthttp: %v\n", err)
		return 2
	}
	go func() {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		for {
			select {
			case <-hup:
				if err := reload(ctx, m, stdout); err != nil && ctx.Err() == nil {
					fmt.Fprintf(stderr, "fasthttp: reload: %v\n", err)
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	ran := make(chan error, 1)
	go func() { ran <- m.Run(ctx) }()
	if err := m.WaitReady(ctx); err == nil {
		li := m.Listeners()[0]
		fmt.Fprintf(stdout, "listening on %s policy=%s workers=%d\n", li.Addr, li.Policy, o.workers)
	} else if ctx.Err() == nil {
		fmt.Fprintf(stderr, "fasthttp: %v\n", err)
		stop()
		<-ran
		return 2
	}
	if err := <-ran; err != nil {
		fmt.Fprintf(stderr, "fasthttp: %v\n", err)
		return 1
	}
	return 0
}

func config(o options, stderr io.Writer) sockshare.Config {
	return sockshare.Config{
		Workers: o.workers,
		Policy:  o.policy,
		Logger:  slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
}

// serve serves s on ln until ctx ends, then drains: every response from
// then on carries Connection: close, the listener is closed (rr and
// leastconn hand what was queued for this worker to another), and each
// connection may send one more request, whose answer closes it, for up to
// window. Only then does Shutdown close the connections still idle (idle
// for the whole window) and wait for the rest, at most shutdownTimeout.
func serve(ctx context.Context, s *fasthttp.Server, ln net.Listener, window, shutdownTimeout time.Duration) error {
	var (
		draining atomic.Bool
		mu       sync.Mutex
		open     int
		changed  = make(chan struct{}, 1)
	)
	h, userState := s.Handler, s.ConnState
	s.Handler = func(c *fasthttp.RequestCtx) {
		if draining.Load() {
			c.SetConnectionClose()
		}
		h(c)
	}
	s.ConnState = func(c net.Conn, st fasthttp.ConnState) {
		mu.Lock()
		switch st {
		case fasthttp.StateNew:
			open++
		case fasthttp.StateClosed, fasthttp.StateHijacked:
			open--
			select {
			case changed <- struct{}{}:
			default:
			}
		}
		mu.Unlock()
		if userState != nil {
			userState(c, st)
		}
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	draining.Store(true)
	ln.Close()
	<-served // Serve returns; the connections it accepted go on
	deadline := time.NewTimer(window)
	defer deadline.Stop()
	for waiting := true; waiting; {
		mu.Lock()
		n := open
		mu.Unlock()
		if n == 0 {
			break
		}
		select {
		case <-changed:
		case <-deadline.C:
			waiting = false
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	// Its other error is ln's second Close.
	if err := s.ShutdownWithContext(sctx); errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// reload replaces every worker and prints which replaced which.
func reload(ctx context.Context, m *sockshare.Master, stdout io.Writer) error {
	before := m.Workers()
	if err := m.Reload(ctx); err != nil {
		return err
	}
	fmt.Fprintln(stdout, reloadLine(before, m.Workers()))
	return nil
}

// reloadLine says, slot by slot, which worker replaced which:
// "reload: worker 1 → 3, 2 → 4".
func reloadLine(before, after []sockshare.WorkerInfo) string {
	// Slot → id of the workers that are not leaving: a snapshot may still
	// list an old worker that is draining or has exited.
	live := func(ws []sockshare.WorkerInfo) map[int]int {
		m := map[int]int{}
		for _, w := range ws {
			if w.State < sockshare.StateDisconnecting {
				m[w.Slot] = w.ID
			}
		}
		return m
	}
	was, now := live(before), live(after)
	var pairs []string
	for _, slot := range slices.Sorted(maps.Keys(now)) {
		if old, ok := was[slot]; ok && old != now[slot] {
			pairs = append(pairs, fmt.Sprintf("%d → %d", old, now[slot]))
		}
	}
	return "reload: worker " + strings.Join(pairs, ", ")
}
