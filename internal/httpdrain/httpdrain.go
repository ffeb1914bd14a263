package httpdrain

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Serve is sockshare.ServeHTTP with the drain window as a parameter (see
// ServeHTTP's documentation for the drain, where window is DrainTimeout).
func Serve(ctx context.Context, srv *http.Server, ln net.Listener, shutdownTimeout, window time.Duration) error {
	d := &httpDrain{conns: map[net.Conn]*drainConn{}, changed: make(chan struct{}, 1)}
	userState, userCtx := srv.ConnState, srv.ConnContext
	// ConnContext runs before StateNew, on the accepting goroutine.
	srv.ConnContext = func(cctx context.Context, c net.Conn) context.Context {
		if userCtx != nil {
			cctx = userCtx(cctx, c)
		}
		return context.WithValue(cctx, drainKey{}, d.add(c))
	}
	srv.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateClosed || s == http.StateHijacked {
			d.remove(c)
		}
		if userState != nil {
			userState(c, s)
		}
	}
	h := srv.Handler
	if h == nil {
		h = http.DefaultServeMux
	}
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 {
			if dc, ok := r.Context().Value(drainKey{}).(*drainConn); ok {
				d.markHTTP2(dc)
			}
		}
		if d.draining.Load() {
			w.Header().Set("Connection", "close")
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
	// Draining before closing the listener: a connection accepted from now
	// on is answered with Connection: close too.
	d.draining.Store(true)
	ln.Close()
	<-served // Serve returns once Accept fails; its connections go on
	d.wait(window)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	return srv.Shutdown(sctx)
}

type drainKey struct{}

// httpDrain tracks ServeHTTP's open connections, and how many of them are
// not known to speak HTTP/2.
type httpDrain struct {
	draining atomic.Bool

	mu      sync.Mutex
	conns   map[net.Conn]*drainConn
	http1   int // conns not marked HTTP/2: new, or HTTP/1
	changed chan struct{}
}

type drainConn struct {
	c     net.Conn
	http2 atomic.Bool
}

func (d *httpDrain) add(c net.Conn) *drainConn {
	dc := &drainConn{c: c}
	d.mu.Lock()
	d.conns[c] = dc
	d.http1++
	d.mu.Unlock()
	return dc
}

// remove forgets c. HTTP/2 reports states of its own for the same conn
// (TLS) or for a wrapper of it (h2c); the HTTP/1 layer's StateClosed comes
// last, and a conn not in the map is ignored.
func (d *httpDrain) remove(c net.Conn) {
	d.mu.Lock()
	dc, ok := d.conns[c]
	if ok {
		delete(d.conns, c)
		if !dc.http2.Load() {
			d.http1--
		}
	}
	d.mu.Unlock()
	if ok {
		d.poke()
	}
}

func (d *httpDrain) markHTTP2(dc *drainConn) {
	if dc.http2.Load() {
		return
	}
	d.mu.Lock()
	// Count it only while it is still tracked (remove takes the lock).
	if !dc.http2.Swap(true) && d.conns[dc.c] == dc {
		d.http1--
	}
	d.mu.Unlock()
	d.poke()
}

func (d *httpDrain) poke() {
	select {
	case d.changed <- struct{}{}:
	default:
	}
}

// wait returns when no connection but HTTP/2 ones is left, or after limit.
func (d *httpDrain) wait(limit time.Duration) {
	timer := time.NewTimer(limit)
	defer timer.Stop()
	for {
		d.mu.Lock()
		n := d.http1
		d.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-d.changed:
		case <-timer.C:
			return
		}
	}
}
