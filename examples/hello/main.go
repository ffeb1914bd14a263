// Command hello is an HTTP server whose workers share one address under a
// sockshare policy.
//
//	go run ./examples/hello [-workers N] [-policy P] [-dispatch D] [-addr host:port]
//
// Every response carries X-Worker: <worker id> and the body
// "hello from worker <id>". GET /work?spin_ms=M&sleep_ms=S burns M ms of
// CPU, then sleeps S ms, then answers. Once every worker listens, the master
// prints one line: "listening on <addr> policy=<p> workers=<n>", with
// " dispatch=<master|kernel>" under rr and leastconn. SIGTERM or
// SIGINT shut down gracefully (exit 0); SIGHUP replaces every worker without
// failing a request and prints "reload: worker 1 → 3, 2 → 4" (old → new,
// slot by slot). Bad flags, a bad address or a port in use print one line on
// stderr and exit 2.
//
// Under go run, the pid you see is the go command's: it forwards no signal,
// and SIGTERM or SIGHUP sent to it end the go command and leave hello
// running. Ctrl-C works (the terminal signals the whole process group). To
// signal hello, run the built binary (go build ./examples/hello).
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
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sockshare/sockshare"
	"github.com/sockshare/sockshare/policy"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

type options struct {
	workers  int
	policy   string
	dispatch string
	addr     string
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("hello", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var o options
	fs.IntVar(&o.workers, "workers", runtime.NumCPU(), "number of worker processes")
	fs.StringVar(&o.policy, "policy", "", "sharing policy: shared, rr, leastconn, reuseport (default $SOCKSHARE_POLICY, else rr)")
	fs.StringVar(&o.dispatch, "dispatch", "", "who picks the worker under rr and leastconn: auto, master, kernel (default $SOCKSHARE_DISPATCH, else auto)")
	fs.StringVar(&o.addr, "addr", "127.0.0.1:8080", "address to listen on")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stderr)
			fs.PrintDefaults()
			return 0
		}
		fmt.Fprintf(stderr, "hello: %v\n", err)
		return 2
	}
	if sockshare.IsWorker() {
		return worker(o)
	}
	return master(o, stdout, stderr)
}

func master(o options, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "hello: %v\n", err)
		return 2
	}
	if o.workers < 1 || o.workers > sockshare.MaxWorkers {
		return fail(fmt.Errorf("-workers must be between 1 and %d, got %d", sockshare.MaxWorkers, o.workers))
	}
	pol, err := policy.Resolve(o.policy)
	if err != nil {
		return fail(err)
	}
	if _, err := net.ResolveTCPAddr("tcp", o.addr); err != nil {
		return fail(fmt.Errorf("bad -addr %q: %w", o.addr, err))
	}
	// A policy degraded on this platform (reuseport that binds but does
	// not balance; no descriptor passing at all) is reported, not silent.
	if w := sockshare.Probe().Degraded(pol); w != "" {
		fmt.Fprintf(stderr, "hello: warning: %s\n", w)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	m, err := sockshare.NewMaster(sockshare.Config{
		Workers:  o.workers,
		Policy:   string(pol),
		Dispatch: o.dispatch,
		Logger:   slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return fail(err)
	}
	go reloadOnHUP(ctx, m, stdout, stderr)
	ran := make(chan error, 1)
	go func() { ran <- m.Run(ctx) }()

	// One line once every worker listens; a listen error (port in use,
	// bad address, permission) stops everything with status 2.
	var lerr *sockshare.ListenError
	switch err := m.WaitReady(ctx); {
	case errors.As(err, &lerr):
		cancel()
		<-ran
		return fail(lerr)
	case err == nil:
		li := m.Listeners()[0]
		line := fmt.Sprintf("listening on %s policy=%s workers=%d", li.Addr, li.Policy, o.workers)
		if li.Dispatch != "" {
			line += " dispatch=" + li.Dispatch
		}
		fmt.Fprintln(stdout, line)
	}
	if err := <-ran; err != nil {
		fmt.Fprintf(stderr, "hello: %v\n", err)
		return 1
	}
	return 0
}

// reloadOnHUP replaces every worker, without dropping a connection, on each
// SIGHUP until ctx ends, and prints which worker replaced which:
// "reload: worker 1 → 3, 2 → 4".
func reloadOnHUP(ctx context.Context, m *sockshare.Master, stdout, stderr io.Writer) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			before := m.Workers()
			if err := m.Reload(ctx); err != nil {
				if ctx.Err() == nil {
					fmt.Fprintf(stderr, "hello: reload: %v\n", err)
				}
				continue
			}
			fmt.Fprintln(stdout, reloadLine(before, m.Workers()))
		case <-ctx.Done():
			return
		}
	}
}

// reloadLine pairs, slot by slot, each old worker with its replacement.
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

func worker(o options) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ln, err := sockshare.Listen("tcp", o.addr)
	if err != nil {
		// The master reports listen errors (once, not once per worker)
		// and shuts down; wait for it to tell us to go.
		select {
		case <-ctx.Done():
		case <-time.After(30 * time.Second):
		}
		return 2
	}
	id := strconv.Itoa(sockshare.WorkerID())
	srv := &http.Server{Handler: handler(id), ReadHeaderTimeout: 10 * time.Second}
	// ServeHTTP, unlike a bare srv.Shutdown, answers every connection the
	// listener already accepted: reloads and shutdowns drop nothing.
	if err := sockshare.ServeHTTP(ctx, srv, ln, 30*time.Second); err != nil {
		return 1
	}
	return 0
}

func handler(id string) http.Handler {
	body := []byte("hello from worker " + id + "\n")
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Worker", id)
		w.Write(body)
	})
	mux.HandleFunc("/work", func(w http.ResponseWriter, r *http.Request) {
		spin, _ := strconv.Atoi(r.URL.Query().Get("spin_ms"))
		sleep, _ := strconv.Atoi(r.URL.Query().Get("sleep_ms"))
		spinFor(time.Duration(spin) * time.Millisecond)
		if sleep > 0 {
			time.Sleep(time.Duration(sleep) * time.Millisecond)
		}
		w.Header().Set("X-Worker", id)
		w.Write(body)
	})
	return mux
}

// spinFor burns CPU for d.
func spinFor(d time.Duration) {
	end := time.Now().Add(d)
	x := 0
	for time.Now().Before(end) {
		for i := 0; i < 1000; i++ {
			x += i
		}
	}
	_ = x
}
