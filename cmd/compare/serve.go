package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/sockshare/sockshare"
)

// envServe tells a worker what to serve; the master passes it in
// Config.Env.
const envServe = "COMPARE_SERVE"

// envPin asks a worker to pin itself to CPU slot % NumCPU (-pin).
const envPin = "COMPARE_PIN"

// serve is the worker: an HTTP/1.1 server on the shared address that
// names itself in X-Worker, until SIGTERM, when it drains and exits.
func serve() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if os.Getenv(envPin) == "1" {
		if err := pinSelf(sockshare.Slot() % runtime.NumCPU()); err != nil {
			fmt.Fprintf(os.Stderr, "compare worker %d: pin: %v\n", sockshare.WorkerID(), err)
			return 2
		}
	}
	// Tell the master what GOMAXPROCS this worker really runs with, so
	// the report does not have to guess what the environment did.
	_ = sockshare.Send([]byte("gomaxprocs=" + strconv.Itoa(runtime.GOMAXPROCS(0))))

	switch mode := os.Getenv(envServe); mode {
	case "http", "":
	case "udp":
		return serveUDP(ctx)
	default:
		fmt.Fprintf(os.Stderr, "compare worker: unknown %s=%q\n", envServe, mode)
		return 2
	}
	ln, err := sockshare.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		// The master sees the listen error as an event and stops; wait
		// for it rather than racing it with an exit it would count as a
		// crash.
		select {
		case <-ctx.Done():
		case <-time.After(30 * time.Second):
		}
		return 2
	}
	return serveHTTP(ctx, ln, sockshare.WorkerID())
}

// serveHTTP serves the compare handler on ln as id until ctx ends, then
// shuts the server down.
func serveHTTP(ctx context.Context, ln net.Listener, id int) int {
	srv := &http.Server{Handler: handler(strconv.Itoa(id)), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		if errors.Is(err, http.ErrServerClosed) {
			return 0
		}
		fmt.Fprintf(os.Stderr, "compare server %d: %v\n", id, err)
		return 1
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return 1
	}
	return 0
}

// handler answers every path with X-Worker and a short body; /work
// first burns spin_ms of CPU, then sleeps sleep_ms.
func handler(id string) http.Handler {
	body := []byte("hello from worker " + id + "\n")
	xw := []string{id}
	cl := []string{strconv.Itoa(len(body))}
	reply := func(w http.ResponseWriter) {
		h := w.Header()
		h["X-Worker"] = xw // already canonical: skip the canonicalisation
		h["Content-Length"] = cl
		w.Write(body)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { reply(w) })
	mux.HandleFunc("/work", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		spin, _ := strconv.Atoi(q.Get("spin_ms"))
		sleep, _ := strconv.Atoi(q.Get("sleep_ms"))
		spinFor(time.Duration(min(max(spin, 0), 10_000)) * time.Millisecond)
		if sleep > 0 {
			time.Sleep(time.Duration(min(sleep, 10_000)) * time.Millisecond)
		}
		reply(w)
	})
	return mux
}

// spinFor burns CPU on this goroutine for d.
func spinFor(d time.Duration) {
	end := time.Now().Add(d)
	x := 0
	for time.Now().Before(end) {
		for i := range 1000 {
			x += i
		}
	}
	_ = x
}
