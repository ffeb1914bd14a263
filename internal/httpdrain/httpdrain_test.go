package httpdrain

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// closeSignalListener closes closed when ServeHTTP closes it, which it does
// once draining has begun.
type closeSignalListener struct {
	net.Listener
	once   sync.Once
	closed chan struct{}
}

func (l *closeSignalListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// drainServer runs ServeHTTP on 127.0.0.1:0 (behind TLS if cfg is not nil)
// with the given drain window and returns its address, the listener (whose
// closed channel says the drain began), the cancel that starts the drain,
// and ServeHTTP's result. accepted receives every conn the server accepted.
func drainServer(t *testing.T, window time.Duration, srv *http.Server, cfg *tls.Config) (addr string, ln *closeSignalListener, drain func(), result <-chan error, accepted <-chan net.Conn) {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln = &closeSignalListener{Listener: raw, closed: make(chan struct{})}
	if cfg != nil {
		ln.Listener = tls.NewListener(raw, cfg)
	}
	acc := make(chan net.Conn, 16)
	srv.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			select {
			case acc <- c:
			default:
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		res <- Serve(ctx, srv, ln, 10*time.Second, window)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("ServeHTTP did not return")
		}
	})
	return raw.Addr().String(), ln, cancel, res, acc
}

func okHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
}

// rawConn is an HTTP/1.1 keep-alive connection, spoken by hand so that
// nothing retries.
type rawConn struct {
	net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return &rawConn{Conn: c, br: bufio.NewReader(c)}
}

// get sends one GET and reads the answer; close says whether it carried
// Connection: close.
func (c *rawConn) get() (close bool, err error) {
	resp, err := writeAndRead(c.Conn, c.br)
	if err != nil {
		return false, err
	}
	return resp.Close, nil
}

func writeAndRead(c net.Conn, br *bufio.Reader) (*http.Response, error) {
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	return resp, nil
}

// waitEOF reads until the server closes c, and fails if it sends anything.
func (c *rawConn) waitEOF(t *testing.T) {
	t.Helper()
	if n, err := c.br.ReadByte(); err != io.EOF {
		t.Fatalf("want EOF from the server, got %q, %v", n, err)
	}
}

// TestServeHTTPDrainKeepAlive: during a drain an idle keep-alive connection
// is not closed under its client; its next request is answered, with
// Connection: close, and so is the first request of a connection accepted
// before the drain. A connection idle for the whole window is closed at its
// end, not before.
func TestServeHTTPDrainKeepAlive(t *testing.T) {
	const window = 400 * time.Millisecond
	addr, ln, drain, result, accepted := drainServer(t, window, &http.Server{Handler: okHandler()}, nil)
	busy, idle, fresh := dialRaw(t, addr), dialRaw(t, addr), dialRaw(t, addr)
	for _, c := range []*rawConn{busy, idle} {
		if closed, err := c.get(); err != nil || closed {
			t.Fatalf("before the drain: close %v, err %v", closed, err)
		}
	}
	for range 3 {
		<-accepted // fresh too, though it has sent nothing
	}

	drain()
	<-ln.closed
	began := time.Now()
	for _, c := range []*rawConn{busy, fresh} {
		closed, err := c.get()
		if err != nil {
			t.Fatalf("request during the drain failed: %v", err)
		}
		if !closed {
			t.Fatal("response during the drain without Connection: close")
		}
		c.waitEOF(t)
	}
	idle.waitEOF(t)
	if el := time.Since(began); el < window {
		t.Fatalf("idle connection closed %v into a %v drain window", el, window)
	}
	if err := <-result; err != nil {
		t.Fatalf("ServeHTTP: %v", err)
	}
}

// TestServeHTTPDrainEndsWithLastConn: the window is an upper bound; the
// drain ends when the last connection has had its Connection: close.
func TestServeHTTPDrainEndsWithLastConn(t *testing.T) {
	addr, ln, drain, result, accepted := drainServer(t, time.Minute, &http.Server{Handler: okHandler()}, nil)
	c := dialRaw(t, addr)
	if _, err := c.get(); err != nil {
		t.Fatal(err)
	}
	<-accepted
	drain()
	<-ln.closed
	if closed, err := c.get(); err != nil || !closed {
		t.Fatalf("close %v, err %v", closed, err)
	}
	select {
	case err := <-result:
		if err != nil {
			t.Fatalf("ServeHTTP: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ServeHTTP still draining 10s after its last connection closed")
	}
}

// TestServeHTTPDrainHTTP2: an HTTP/2 connection (h2c and TLS, Go's client)
// gets GOAWAY at once, not at the end of the window, and the stream in
// flight when the drain begins finishes.
func TestServeHTTPDrainHTTP2(t *testing.T) {
	for _, mode := range []string{"h2c", "tls"} {
		t.Run(mode, func(t *testing.T) {
			release := make(chan struct{})
			started := make(chan struct{}, 1)
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.ProtoMajor != 2 {
					http.Error(w, "want HTTP/2, got "+r.Proto, http.StatusBadRequest)
					return
				}
				if r.URL.Path == "/slow" {
					started <- struct{}{}
					<-release
				}
				io.WriteString(w, "ok")
			})
			srv := &http.Server{Handler: h, Protocols: new(http.Protocols)}
			tr := &http.Transport{Protocols: new(http.Protocols)}
			scheme := "http"
			var addr string
			var ln *closeSignalListener
			var drain func()
			var result <-chan error
			if mode == "h2c" {
				srv.Protocols.SetUnencryptedHTTP2(true)
				tr.Protocols.SetUnencryptedHTTP2(true)
				addr, ln, drain, result, _ = drainServer(t, time.Minute, srv, nil)
			} else {
				ts := httptest.NewUnstartedServer(nil) // only for its certificate
				ts.EnableHTTP2 = true
				ts.StartTLS()
				cfg := ts.TLS.Clone()
				tr.TLSClientConfig = ts.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
				ts.Close()
				srv.Protocols.SetHTTP2(true)
				tr.Protocols.SetHTTP2(true)
				srv.TLSConfig = cfg
				scheme = "https"
				addr, ln, drain, result, _ = drainServer(t, time.Minute, srv, cfg)
			}
			client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
			defer tr.CloseIdleConnections()
			url := scheme + "://" + addr
			if err := getOK(client, url+"/"); err != nil {
				t.Fatal(err)
			}
			slow := make(chan error, 1)
			go func() { slow <- getOK(client, url+"/slow") }()
			<-started
			drain()
			<-ln.closed
			close(release)
			if err := <-slow; err != nil {
				t.Fatalf("stream in flight during the drain: %v", err)
			}
			select {
			case err := <-result:
				if err != nil {
					t.Fatalf("ServeHTTP: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("ServeHTTP waited for the HTTP/2 connection instead of sending GOAWAY")
			}
		})
	}
}

func getOK(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		return errors.New(resp.Proto + " " + resp.Status + ": " + string(b))
	}
	return nil
}
