//go:build linux

package sockshare_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sockshare/sockshare"
)

// The raw TCP recipe of the README: a line protocol served on
// sockshare.Listen that reloads without failing a request. The protocol
// has what HTTP/2 has and HTTP/1.1 lacks, a way for the server to say "no
// more requests here" that cannot cross a request in flight: the server
// writes a line "goaway", keeps answering whatever the client still sends,
// and closes when the client does. The client, on reading "goaway", reads
// the answers it is owed, then closes and dials again.

func init() {
	roles["lines"] = linesWorker
}

// linesWorker answers each line with "<worker id> <line>" until SIGTERM,
// then drains.
func linesWorker() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	ln, err := sockshare.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker listen:", err)
		return 2
	}
	serveLines(ctx, ln, strconv.Itoa(sockshare.WorkerID()), 10*time.Second)
	return 0
}

// lineConn is one client connection; mu orders the writes of its serving
// goroutine and of the drain.
type lineConn struct {
	net.Conn
	mu sync.Mutex
}

func (c *lineConn) send(s string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := c.Write([]byte(s))
	return err
}

// serveLines serves ln until ctx ends, then closes the listener (rr and
// leastconn hand what they had queued for this worker to another), tells
// every connection "goaway", and waits up to window for the clients to
// close; the connections still open then are closed.
func serveLines(ctx context.Context, ln net.Listener, id string, window time.Duration) {
	var (
		mu    sync.Mutex
		conns = map[*lineConn]bool{}
		wg    sync.WaitGroup
	)
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		nc, err := ln.Accept()
		if err != nil {
			break // closed by the drain
		}
		c := &lineConn{Conn: nc}
		mu.Lock()
		conns[c] = true
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				if c.send(id+" "+sc.Text()+"\n") != nil {
					break
				}
			}
			c.Close() // the client closed (or the deadline did)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
		}()
	}
	// Every connection accepted is in conns: Accept has failed for good.
	mu.Lock()
	for c := range conns {
		c.send("goaway\n")
	}
	mu.Unlock()
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(window):
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		<-done
	}
}

// lineClient is the client side: one request line at a time, never
// resent. It returns the answering worker.
type lineClient struct {
	addr string
	c    net.Conn
	br   *bufio.Reader
	n    int
}

func (lc *lineClient) call() (worker string, err error) {
	if lc.c == nil {
		c, err := net.DialTimeout("tcp", lc.addr, 5*time.Second)
		if err != nil {
			return "", fmt.Errorf("dial: %w", err)
		}
		lc.c, lc.br = c, bufio.NewReader(c)
	}
	defer func() {
		if err != nil {
			lc.close()
		}
	}()
	lc.n++
	req := "req " + strconv.Itoa(lc.n)
	lc.c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := lc.c.Write([]byte(req + "\n")); err != nil {
		return "", fmt.Errorf("write: %w", err)
	}
	goaway := false
	for {
		line, err := lc.br.ReadString('\n')
		if err != nil {
			return "", fmt.Errorf("read: %w", err)
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "goaway" {
			goaway = true // the answer to req still comes
			continue
		}
		w, got, _ := strings.Cut(line, " ")
		if got != req {
			return "", fmt.Errorf("sent %q, answered %q", req, line)
		}
		if goaway {
			lc.close()
		}
		return w, nil
	}
}

func (lc *lineClient) close() {
	if lc.c != nil {
		lc.c.Close()
		lc.c = nil
	}
}

// TestLinesReloadNoFailure: 64 line-protocol clients that never resend a
// request see no failure across two rolling reloads, under every policy.
func TestLinesReloadNoFailure(t *testing.T) {
	for _, p := range allPolicies {
		t.Run(string(p), func(t *testing.T) {
			t.Parallel() // see TestKeepAliveReloadNoRetry
			c := startCluster(t, sockshare.Config{Workers: 2, Policy: string(p)}, "lines")
			var ok, failed atomic.Int64
			var mu sync.Mutex
			var first []error
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for range 64 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					lc := &lineClient{addr: c.addr}
					defer lc.close()
					for {
						select {
						case <-stop:
							return
						default:
						}
						if _, err := lc.call(); err != nil {
							failed.Add(1)
							mu.Lock()
							if len(first) < 5 {
								first = append(first, err)
							}
							mu.Unlock()
							continue
						}
						ok.Add(1)
					}
				}()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			start, d := time.Now(), time.Second
			var reloadErr error
			for _, at := range []time.Duration{d / 5, 3 * d / 5} {
				<-time.After(time.Until(start.Add(at)))
				if reloadErr = c.m.Reload(ctx); reloadErr != nil {
					break
				}
			}
			<-time.After(max(d/5, time.Until(start.Add(d))))
			close(stop)
			wg.Wait()
			if reloadErr != nil {
				t.Fatalf("Reload: %v", reloadErr)
			}
			t.Logf("%s: 64 conns, 2 reloads: %d calls ok, %d failed", p, ok.Load(), failed.Load())
			if failed.Load() > 0 {
				t.Fatalf("%d calls failed; first: %v", failed.Load(), first)
			}
		})
	}
}
