package sockshare

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// DrainTimeout bounds how long ServeHTTP waits, after closing the listener,
// for accepted connections to deliver their first request.
const DrainTimeout = 5 * time.Second

// ServeHTTP serves srv on ln until ctx ends, then shuts down without
// dropping a connection the listener already accepted, and returns nil
// (or the error that stopped serving).
//
// Why not just srv.Shutdown: http.Server closes, unanswered, any connection
// whose first request it reads after Shutdown has begun. A connection
// accepted a moment before the shutdown is such a connection, and its
// client sees EOF, which defeats a rolling reload. ServeHTTP closes the
// listener first (under rr and leastconn the connections handed but not yet
// accepted go back to the master for another worker; under shared and
// reuseport they stay queued on the socket for the others), waits until
// every accepted connection has reached its handler or closed, at most
// DrainTimeout, then calls srv.Shutdown with shutdownTimeout.
//
// ServeHTTP sets srv.ConnState and srv.ConnContext, chaining any the caller
// set. Idle keep-alive connections are closed by Shutdown as usual; an
// HTTP/1.1 client may then see EOF on a request it sends at that instant,
// which it is expected to retry.
func ServeHTTP(ctx context.Context, srv *http.Server, ln net.Listener, shutdownTimeout time.Duration) error {
	t := &connTracker{pending: map[net.Conn]bool{}, changed: make(chan struct{}, 1)}
	userState, userCtx := srv.ConnState, srv.ConnContext
	srv.ConnState = func(c net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			t.add(c)
		case http.StateClosed, http.StateHijacked:
			t.done(c)
		}
		if userState != nil {
			userState(c, s)
		}
	}
	srv.ConnContext = func(cctx context.Context, c net.Conn) context.Context {
		if userCtx != nil {
			cctx = userCtx(cctx, c)
		}
		return context.WithValue(cctx, trackerKey{}, c)
	}
	h := srv.Handler
	if h == nil {
		h = http.DefaultServeMux
	}
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, ok := r.Context().Value(trackerKey{}).(net.Conn); ok {
			t.done(c)
		}
		h.ServeHTTP(w, r)
	})

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	case <-ctx.Done():
	}
	ln.Close()
	<-served // Serve returns once Accept fails
	t.wait(DrainTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	return srv.Shutdown(sctx)
}

type trackerKey struct{}

// connTracker counts connections accepted whose first request has not yet
// reached a handler.
type connTracker struct {
	mu      sync.Mutex
	pending map[net.Conn]bool
	changed chan struct{}
}

func (t *connTracker) add(c net.Conn) {
	t.mu.Lock()
	t.pending[c] = true
	t.mu.Unlock()
}

func (t *connTracker) done(c net.Conn) {
	t.mu.Lock()
	delete(t.pending, c)
	n := len(t.pending)
	t.mu.Unlock()
	if n == 0 {
		select {
		case t.changed <- struct{}{}:
		default:
		}
	}
}

func (t *connTracker) wait(limit time.Duration) {
	timer := time.NewTimer(limit)
	defer timer.Stop()
	for {
		t.mu.Lock()
		n := len(t.pending)
		t.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-t.changed:
		case <-timer.C:
			return
		}
	}
}
