package sockshare_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sockshare/sockshare"
)

// Environment of the test worker roles.
const (
	addrEnv = "SOCKSHARE_TEST_ADDR"
)

func init() {
	roles["http"] = httpWorker
}

// httpWorker serves HTTP like examples/hello: X-Worker on every response,
// /work?spin_ms=&sleep_ms=. It drains and exits 0 on SIGTERM.
func httpWorker() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	addr := os.Getenv(addrEnv)
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := sockshare.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker listen:", err)
		sockshare.Send([]byte("listen-error " + err.Error()))
		<-ctx.Done()
		return 2
	}
	return serveHTTP(ctx, ln)
}

func serveHTTP(ctx context.Context, ln net.Listener) int {
	id := strconv.Itoa(sockshare.WorkerID())
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Worker", id)
		io.WriteString(w, "hello from worker "+id+"\n")
	})
	mux.HandleFunc("/work", func(w http.ResponseWriter, r *http.Request) {
		if ms, _ := strconv.Atoi(r.URL.Query().Get("spin_ms")); ms > 0 {
			end := time.Now().Add(time.Duration(ms) * time.Millisecond)
			for time.Now().Before(end) {
			}
		}
		if ms, _ := strconv.Atoi(r.URL.Query().Get("sleep_ms")); ms > 0 {
			time.Sleep(time.Duration(ms) * time.Millisecond)
		}
		w.Header().Set("X-Worker", id)
		io.WriteString(w, "hello from worker "+id+"\n")
	})
	srv := &http.Server{Handler: mux}
	if err := sockshare.ServeHTTP(ctx, srv, ln, 20*time.Second); err != nil {
		return 1
	}
	return 0
}

// cluster is a master run in the test process with the test binary as its
// workers.
type cluster struct {
	t      *testing.T
	m      *sockshare.Master
	addr   string
	cancel context.CancelFunc
	done   chan error

	mu       sync.Mutex
	events   []sockshare.Event
	messages []string
	notify   chan struct{}
}

// startCluster starts a master with cfg (Program, Env and OnEvent are
// filled in) running role, and waits until every worker listens.
func startCluster(t *testing.T, cfg sockshare.Config, role string, env ...string) *cluster {
	t.Helper()
	c := launch(t, cfg, role, env...)
	n := c.m.NumWorkers()
	c.waitFor("every worker listening", 30*time.Second, func(evs []sockshare.Event, _ []string) bool {
		seen := map[int]bool{}
		for _, e := range evs {
			if e.Type == sockshare.EventListening {
				seen[e.WorkerID] = true
				c.addr = e.Addr
			}
		}
		return len(seen) >= n
	})
	return c
}

// launch starts a master with cfg (Program, Env, OnEvent and OnMessage
// are filled in; cfg.Env is added to this process's) running role, and
// stops it when the test ends.
func launch(t *testing.T, cfg sockshare.Config, role string, env ...string) *cluster {
	t.Helper()
	c := &cluster{t: t, done: make(chan error, 1), notify: make(chan struct{}, 1)}
	cfg.Program = os.Args[0]
	cfg.Args = []string{}
	cfg.Env = append(append(append(os.Environ(), roleEnv+"="+role), cfg.Env...), env...)
	cfg.OnEvent = c.record
	cfg.OnMessage = func(id int, p []byte) {
		c.mu.Lock()
		c.messages = append(c.messages, fmt.Sprintf("%d %s", id, p))
		c.mu.Unlock()
		c.poke()
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	m, err := sockshare.NewMaster(cfg)
	if err != nil {
		t.Fatalf("NewMaster: %v", err)
	}
	c.m = m
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	go func() { c.done <- m.Run(ctx) }()
	t.Cleanup(c.stop)
	return c
}

func (c *cluster) record(e sockshare.Event) {
	c.mu.Lock()
	c.events = append(c.events, e)
	c.mu.Unlock()
	c.poke()
}

func (c *cluster) poke() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// waitFor waits until cond holds over the events and messages so far, or
// fails the test after timeout. It wakes on every event, not on a timer.
func (c *cluster) waitFor(what string, timeout time.Duration, cond func([]sockshare.Event, []string) bool) {
	c.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		ok := cond(c.events, c.messages)
		c.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-c.notify:
		case err := <-c.done:
			c.done <- err
			c.t.Fatalf("waiting for %s: master ended: %v\nevents:\n%s", what, err, c.eventLog())
		case <-deadline.C:
			c.t.Fatalf("timed out after %v waiting for %s\nevents:\n%s", timeout, what, c.eventLog())
		}
	}
}

func (c *cluster) eventLog() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, e := range c.events {
		fmt.Fprintf(&b, "  %v\n", e)
	}
	for _, m := range c.messages {
		fmt.Fprintf(&b, "  message: %s\n", m)
	}
	return b.String()
}

// stop shuts the master down and waits for Run to return.
func (c *cluster) stop() {
	c.cancel()
	select {
	case err := <-c.done:
		c.done <- err
		if err != nil {
			c.t.Errorf("Run returned %v", err)
		}
	case <-time.After(30 * time.Second):
		c.t.Errorf("master did not stop within 30s")
	}
}

// result is one HTTP request's outcome as a client sees it.
type result struct {
	status int
	worker string
	err    error
}

// get makes one request on a new connection (Connection: close) with a raw
// HTTP/1.1 client, so every error is the socket's own.
func get(addr, path string) result { return getFrom(nil, addr, path) }

// getFrom is get from the source address src (nil: any).
func getFrom(src net.IP, addr, path string) result {
	d := net.Dialer{Timeout: 5 * time.Second}
	if src != nil {
		d.LocalAddr = &net.TCPAddr{IP: src}
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return result{err: err}
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path); err != nil {
		return result{err: err}
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return result{err: err}
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return result{err: err}
	}
	return result{status: resp.StatusCode, worker: resp.Header.Get("X-Worker")}
}

// load makes n requests, c at a time, each on its own connection.
func load(addr, path string, n, c int) []result {
	out := make([]result, n)
	var wg sync.WaitGroup
	next := make(chan int)
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				out[i] = get(addr, path)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return out
}

// tally counts results per worker and collects errors.
func tally(rs []result) (perWorker map[string]int, errs []error) {
	perWorker = map[string]int{}
	for _, r := range rs {
		switch {
		case r.err != nil:
			errs = append(errs, r.err)
		case r.status != 200:
			errs = append(errs, fmt.Errorf("status %d", r.status))
		default:
			perWorker[r.worker]++
		}
	}
	return perWorker, errs
}

// keepAlive makes reqs requests on each of conns persistent connections.
func keepAlive(addr string, conns, reqs int) []result {
	out := make([]result, conns*reqs)
	var wg sync.WaitGroup
	for k := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				for i := range reqs {
					out[k*reqs+i] = result{err: err}
				}
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			br := bufio.NewReader(c)
			for i := range reqs {
				r := result{}
				if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
					r.err = err
				} else if resp, err := http.ReadResponse(br, nil); err != nil {
					r.err = err
				} else {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					r.status, r.worker = resp.StatusCode, resp.Header.Get("X-Worker")
				}
				out[k*reqs+i] = r
			}
		}()
	}
	wg.Wait()
	return out
}

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count fds: %v", err)
	}
	return len(ents)
}

func dialTCP(addr string) (net.Conn, error) { return net.DialTimeout("tcp", addr, 5*time.Second) }

// logSink is a goroutine-safe buffer for a master's slog output.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// steadyLoad runs conc clients making one-request connections to path until
// stop is closed (or a bound of requests is reached). warmed is closed once
// warm results are in; results waits for the clients and returns them all.
func steadyLoad(addr, path string, conc, warm int, stop <-chan struct{}) (warmed <-chan struct{}, results func() []result) {
	var (
		mu   sync.Mutex
		all  []result
		wg   sync.WaitGroup
		once sync.Once
	)
	w := make(chan struct{})
	if warm <= 0 {
		close(w)
	}
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 20000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				r := get(addr, path)
				mu.Lock()
				all = append(all, r)
				if warm > 0 && len(all) >= warm {
					once.Do(func() { close(w) })
				}
				mu.Unlock()
			}
		}()
	}
	return w, func() []result {
		wg.Wait()
		return all
	}
}
