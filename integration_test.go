//go:build linux

package sockshare_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockshare/sockshare"
	"github.com/sockshare/sockshare/policy"
)

func init() {
	roles["master"] = masterRole
	roles["stall-slot0"] = stallSlot0Worker
	roles["listen-retry"] = listenRetryWorker
	roles["stall-on-message"] = stallOnMessageWorker
}

var allPolicies = []policy.Name{policy.Shared, policy.RR, policy.LeastConn, policy.ReusePort}

// TestPoliciesServeShortConnections: every policy serves thousands of
// one-request connections, all answered 200, by both workers; rr's counts
// differ by at most one.
func TestPoliciesServeShortConnections(t *testing.T) {
	for _, p := range allPolicies {
		t.Run(string(p), func(t *testing.T) {
			t.Parallel() // own cluster and address; counts no descriptor
			c := startCluster(t, sockshare.Config{Workers: 2, Policy: string(p)}, "http")
			per, errs := tally(load(c.addr, "/", 2000, 16))
			if len(errs) > 0 {
				t.Fatalf("%d of 2000 requests failed, first: %v", len(errs), errs[0])
			}
			if len(per) != 2 {
				t.Fatalf("requests per worker = %v; want both workers", per)
			}
			if p == policy.RR {
				counts := []int{}
				for _, n := range per {
					counts = append(counts, n)
				}
				if d := counts[0] - counts[1]; d > 1 || d < -1 {
					t.Fatalf("rr counts %v differ by more than 1", per)
				}
			}
		})
	}
}

// TestPoliciesServeKeepAlive: persistent connections work under every
// policy; the handoff policies spread them exactly.
func TestPoliciesServeKeepAlive(t *testing.T) {
	for _, p := range allPolicies {
		t.Run(string(p), func(t *testing.T) {
			t.Parallel() // own cluster and address; counts no descriptor
			c := startCluster(t, sockshare.Config{Workers: 2, Policy: string(p)}, "http")
			per, errs := tally(keepAlive(c.addr, 16, 50))
			if len(errs) > 0 {
				t.Fatalf("%d of 800 requests failed, first: %v", len(errs), errs[0])
			}
			total := 0
			for _, n := range per {
				total += n
			}
			if total != 800 {
				t.Fatalf("answered %d of 800", total)
			}
			if p.Dispatches() {
				// 16 connections, 50 requests each, handed alternately.
				if len(per) != 2 || slices.Max(mapValues(per)) != 400 {
					t.Fatalf("keep-alive requests per worker = %v; want 400 each", per)
				}
			}
		})
	}
}

func mapValues(m map[string]int) []int {
	v := make([]int, 0, len(m))
	for _, n := range m {
		v = append(v, n)
	}
	return v
}

// TestLeastConnFollowsLoad: with one worker holding long-lived
// connections, leastconn sends new connections to the other one, where rr
// would alternate.
func TestLeastConnFollowsLoad(t *testing.T) {
	c := startCluster(t, sockshare.Config{Workers: 2, Policy: "leastconn"}, "http")
	// Ten persistent connections, alternately handed: five per worker.
	type held struct {
		conn   net.Conn
		worker string
	}
	var hs []held
	for range 10 {
		conn, err := net.Dial("tcp", c.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		br := bufio.NewReader(conn)
		w := ""
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if v, ok := strings.CutPrefix(line, "X-Worker: "); ok {
				w = strings.TrimSpace(v)
			}
			if line == "\r\n" {
				break
			}
		}
		hs = append(hs, held{conn, w})
	}
	// Close every connection of the first worker: it is idle now, the
	// other holds five.
	idle := hs[0].worker
	for _, h := range hs {
		if h.worker == idle {
			h.conn.Close()
		}
	}
	// The closes reach the master asynchronously (the worker sees EOF,
	// closes, and its acknowledgement is batched): wait until it counts
	// the idle worker as idle, or the picks below race with them.
	if !pollUntil(10*time.Second, func() bool {
		for _, w := range c.m.Workers() {
			if strconv.Itoa(w.ID) == idle {
				return w.Active == 0
			}
		}
		return false
	}) {
		t.Fatalf("worker %s still counted with active connections 10s after they closed: %+v", idle, c.m.Workers())
	}
	// Sequential short connections must all go to the idle worker.
	for i := range 10 {
		r := get(c.addr, "/")
		if r.err != nil || r.status != 200 {
			t.Fatalf("request %d: %+v", i, r)
		}
		if r.worker != idle {
			t.Fatalf("request %d went to worker %s, which holds 5 connections; want idle worker %s", i, r.worker, idle)
		}
	}
}

// stallSlot0Worker listens but never accepts in slot 0: connections
// handed to it stay in its window. Other slots serve HTTP.
func stallSlot0Worker() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	ln, err := sockshare.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 2
	}
	if sockshare.Slot() == 0 {
		<-ctx.Done()
		return 0
	}
	return serveHTTP(ctx, ln)
}

// TestKilledWorkerWindowIsRedispatched: connections handed to a worker
// that dies before taking them are served by the other worker; none is
// refused or reset.
func TestKilledWorkerWindowIsRedispatched(t *testing.T) {
	for _, p := range []policy.Name{policy.RR, policy.LeastConn} {
		t.Run(string(p), func(t *testing.T) {
			// The master's window is under test.
			c := startCluster(t, sockshare.Config{Workers: 2, Policy: string(p), Dispatch: sockshare.DispatchMaster, RestartDelay: time.Hour}, "stall-slot0")
			results := make(chan result, 20)
			for range 20 {
				go func() { results <- get(c.addr, "/") }()
			}
			// Wait until the staller holds connections in its window.
			var stalled sockshare.WorkerInfo
			pollUntil(10*time.Second, func() bool {
				stalled = workerOfSlot(c.m.Workers(), 0)
				return stalled.Inflight > 0
			})
			if stalled.Inflight == 0 {
				t.Fatalf("the stalled worker holds no connections: %+v", c.m.Workers())
			}
			syscall.Kill(stalled.PID, syscall.SIGKILL)
			per := map[string]int{}
			for range 20 {
				r := <-results
				if r.err != nil || r.status != 200 {
					t.Fatalf("a request failed after the kill: %+v", r)
				}
				per[r.worker]++
			}
			if per[strconv.Itoa(stalled.ID)] != 0 || len(per) != 1 {
				t.Fatalf("per worker %v; want all from the live worker", per)
			}
		})
	}
}

// pollUntil evaluates cond every 2 ms until it holds and reports whether
// it did within timeout. It is for state that changes with no event to
// wait for: Master.Workers and Master.Listeners counters, which move as
// IPC acknowledgements arrive, and descriptor counts. Events are waited for
// with cluster.waitFor.
func pollUntil(timeout time.Duration, cond func() bool) bool {
	if cond() {
		return true
	}
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		select {
		case <-tick.C:
			if cond() {
				return true
			}
		case <-deadline.C:
			return cond()
		}
	}
}

// workerOfSlot returns the first worker of slot in ws, or a zero
// WorkerInfo.
func workerOfSlot(ws []sockshare.WorkerInfo, slot int) sockshare.WorkerInfo {
	for _, w := range ws {
		if w.Slot == slot {
			return w
		}
	}
	return sockshare.WorkerInfo{}
}

// TestWorkerKilledUnderLoad: SIGKILL of one rr worker under continuous
// load, at a moment when it holds handed connections its Accept has not
// returned. Those are handed to the other worker (Redispatched counts at
// least what was in the killed worker's window), so no request fails
// unless the killed worker's own Accept had returned its connection; the
// slot is back within 1 s and serves again.
//
// To know what was in the window at the kill, the victim is first told to
// stop accepting: its window then only fills. Every connection its Accept
// returned is logged by client port to a file, so a failed request can be
// told apart: on a connection the victim had (it may fail), or not (it
// must not).
func TestWorkerKilledUnderLoad(t *testing.T) {
	// The master's handoff is under test.
	dir := t.TempDir()
	c := startCluster(t, sockshare.Config{Workers: 2, Policy: "rr", Dispatch: sockshare.DispatchMaster}, "stall-on-message", acceptLogEnv+"="+dir)
	const conc = 8
	stop := make(chan struct{})
	warmed, results := portLoad(c.addr, "/work?sleep_ms=2", conc, 200, stop)
	stopped := false
	defer func() {
		if !stopped {
			close(stop)
			results()
		}
	}()
	select {
	case <-warmed:
	case <-time.After(30 * time.Second):
		t.Fatal("no 200 answers within 30s")
	}
	victim := workerOfSlot(c.m.Workers(), 0)
	if err := c.m.Send(victim.ID, []byte("stall")); err != nil {
		t.Fatal(err)
	}
	message(c, "stalled", 10*time.Second)
	// Its Accept no longer returns: what the master hands it stays in its
	// window, which only grows.
	if !pollUntil(10*time.Second, func() bool {
		victim = workerOfSlot(c.m.Workers(), 0)
		return victim.Inflight >= conc/2
	}) {
		t.Fatalf("the stalled worker holds %d connections in its window after 10s; want %d", victim.Inflight, conc/2)
	}
	before := c.m.Listeners()[0]
	window := victim.Inflight // at least; it may grow until the kill
	killed := time.Now()
	if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var back sockshare.Event
	c.waitFor("the slot to restart", 10*time.Second, func(evs []sockshare.Event, _ []string) bool {
		for _, e := range evs {
			if e.Type == sockshare.EventListening && e.Slot == victim.Slot && e.WorkerID != victim.ID {
				back = e
				return true
			}
		}
		return false
	})
	if d := back.Time.Sub(killed); d > time.Second {
		t.Errorf("slot %d came back after %v; want within 1s", victim.Slot, d)
	}
	// Keep the load on until the new worker has served some of it.
	if !pollUntil(10*time.Second, func() bool {
		return workerOfSlot(c.m.Workers(), victim.Slot).Taken >= 20
	}) {
		t.Errorf("the new worker %d of slot %d took %d connections in 10s; want 20", back.WorkerID, victim.Slot, workerOfSlot(c.m.Workers(), victim.Slot).Taken)
	}
	close(stop)
	stopped = true
	all := results()

	after := c.m.Listeners()[0]
	if d := after.Redispatched - before.Redispatched; d < uint64(window) {
		t.Errorf("%d connections re-dispatched after the kill; %d were in the killed worker's window: %+v", d, window, after)
	}
	accepted := acceptedPorts(t, dir, victim.ID)
	failed, theirs := 0, 0
	for _, r := range all {
		if r.err == nil && r.status == 200 {
			continue
		}
		failed++
		if r.port != 0 && accepted[r.port] {
			theirs++ // the killed worker's Accept had returned it
			continue
		}
		if failed-theirs <= 5 {
			t.Errorf("request from port %d failed, and the killed worker never accepted it: %v (status %d)", r.port, r.err, r.status)
		}
	}
	if failed > theirs {
		t.Errorf("%d of %d requests failed that the killed worker had not accepted", failed-theirs, len(all))
	}
	per, _ := tally(resultsOf(all))
	if per[strconv.Itoa(back.WorkerID)] == 0 {
		t.Errorf("the new worker %d answered no request: %v", back.WorkerID, per)
	}
	t.Logf("%d requests, %d failed (each accepted by the killed worker); %d in its window at the kill, %d re-dispatched; slot back after %v; per worker %v",
		len(all), failed, window, after.Redispatched-before.Redispatched, back.Time.Sub(killed).Round(time.Millisecond), per)
}

// acceptLogEnv is the directory where the stall-on-message role logs the
// client port of each connection its Accept returns, in accepted-<id>.
const acceptLogEnv = "SOCKSHARE_TEST_ACCEPT_LOG"

// stallOnMessageWorker serves HTTP like httpWorker and appends the client
// port of every connection its Accept returns to $SOCKSHARE_TEST_ACCEPT_LOG
// /accepted-<id> (one write each, so the record survives SIGKILL). When the
// master sends "stall", its Accept stops returning connections and it
// answers "stalled" once no Accept is under way.
func stallOnMessageWorker() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	f, err := os.OpenFile(filepath.Join(os.Getenv(acceptLogEnv), "accepted-"+strconv.Itoa(sockshare.WorkerID())), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer f.Close()
	ln, err := sockshare.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 2
	}
	sl := &stallListener{Listener: ln, log: f, done: make(chan struct{})}
	sockshare.HandleMessages(func(p []byte) {
		if string(p) == "stall" {
			sl.stall()
		}
	})
	return serveHTTP(ctx, sl)
}

// stallListener logs what Accept returns and stops accepting on request.
type stallListener struct {
	net.Listener
	log  *os.File
	done chan struct{} // closed by Close

	mu                          sync.Mutex
	stalling, accepting, stated bool
	closeOnce                   sync.Once
}

func (l *stallListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if l.stalling {
		l.tellLocked()
		l.mu.Unlock()
		<-l.done
		return nil, net.ErrClosed
	}
	l.accepting = true
	l.mu.Unlock()
	c, err := l.Listener.Accept()
	if err == nil {
		if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			fmt.Fprintf(l.log, "%d\n", a.Port)
		}
	}
	l.mu.Lock()
	l.accepting = false
	if l.stalling {
		l.tellLocked()
	}
	l.mu.Unlock()
	return c, err
}

func (l *stallListener) stall() {
	l.mu.Lock()
	l.stalling = true
	if !l.accepting {
		l.tellLocked()
	}
	l.mu.Unlock()
}

// tellLocked says "stalled" once: no Accept is under way, none will be.
func (l *stallListener) tellLocked() {
	if !l.stated {
		l.stated = true
		go sockshare.Send([]byte("stalled"))
	}
}

func (l *stallListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// acceptedPorts reads the ports worker id logged as accepted.
func acceptedPorts(t *testing.T, dir string, id int) map[int]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "accepted-"+strconv.Itoa(id)))
	if err != nil {
		t.Fatal(err)
	}
	ports := map[int]bool{}
	for _, f := range strings.Fields(string(b)) {
		p, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("accept log of worker %d: %q", id, f)
		}
		ports[p] = true
	}
	return ports
}

// portResult is one request's outcome with the client's port (0 if it did
// not connect).
type portResult struct {
	result
	port int
}

func resultsOf(prs []portResult) []result {
	rs := make([]result, len(prs))
	for i, r := range prs {
		rs[i] = r.result
	}
	return rs
}

// getPort is get with the client port and a 5 s bound.
func getPort(addr, path string) portResult {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return portResult{result: result{err: err}}
	}
	defer conn.Close()
	pr := portResult{port: conn.LocalAddr().(*net.TCPAddr).Port}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path); err != nil {
		pr.err = err
		return pr
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		pr.err = err
		return pr
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		pr.err = err
		return pr
	}
	pr.status, pr.worker = resp.StatusCode, resp.Header.Get("X-Worker")
	return pr
}

// portLoad is steadyLoad with getPort.
func portLoad(addr, path string, conc, warm int, stop <-chan struct{}) (warmed <-chan struct{}, results func() []portResult) {
	var (
		mu   sync.Mutex
		all  []portResult
		wg   sync.WaitGroup
		once sync.Once
	)
	w := make(chan struct{})
	for range conc {
		wg.Go(func() {
			for n := 0; n < 20000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				r := getPort(addr, path)
				mu.Lock()
				all = append(all, r)
				if len(all) >= warm {
					once.Do(func() { close(w) })
				}
				mu.Unlock()
			}
		})
	}
	return w, func() []portResult {
		wg.Wait()
		return all
	}
}

// TestListenErrors: a port in use comes back to the worker's Listen as an
// error naming address and policy that satisfies errors.Is(EADDRINUSE);
// the master survives and a later Listen succeeds.
func TestListenErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := busy.Addr().String()
	c := &cluster{t: t, done: make(chan error, 1), notify: make(chan struct{}, 1)}
	cfg := sockshare.Config{
		Workers: 1, Policy: "rr", Program: os.Args[0], Args: []string{},
		Env:     append(os.Environ(), roleEnv+"=listen-retry", addrEnv+"="+addr),
		OnEvent: c.record,
		OnMessage: func(id int, p []byte) {
			c.mu.Lock()
			c.messages = append(c.messages, string(p))
			c.mu.Unlock()
			c.poke()
		},
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

	var werr sockshare.Event
	c.waitFor("the listen error", 20*time.Second, func(evs []sockshare.Event, msgs []string) bool {
		for _, e := range evs {
			if e.Type == sockshare.EventListenError {
				werr = e
			}
		}
		return werr.Err != nil && len(msgs) > 0
	})
	if !errors.Is(werr.Err, syscall.EADDRINUSE) {
		t.Errorf("master's listen-error event: %v; want EADDRINUSE", werr.Err)
	}
	c.mu.Lock()
	msg := c.messages[0]
	c.mu.Unlock()
	want := fmt.Sprintf(`eaddrinuse=true listen tcp %s: policy "rr": `, addr)
	if !strings.HasPrefix(msg, want) || !strings.Contains(msg, "address already in use") {
		t.Errorf("worker's Listen error = %q; want prefix %q and the cause", msg, want)
	}
	// Free the port; the worker retries and now succeeds.
	busy.Close()
	m.Send(werr.WorkerID, []byte("retry"))
	c.waitFor("listening after the retry", 20*time.Second, func(evs []sockshare.Event, _ []string) bool {
		for _, e := range evs {
			if e.Type == sockshare.EventListening {
				return true
			}
		}
		return false
	})
	if r := get(addr, "/"); r.err != nil || r.status != 200 {
		t.Fatalf("after the retry: %+v", r)
	}
}

// listenRetryWorker reports its Listen error to the master, waits for
// "retry", and listens again.
func listenRetryWorker() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	retry := make(chan struct{}, 1)
	sockshare.HandleMessages(func(p []byte) {
		if string(p) == "retry" {
			retry <- struct{}{}
		}
	})
	addr := os.Getenv(addrEnv)
	_, err := sockshare.Listen("tcp", addr)
	if err == nil {
		return 3
	}
	sockshare.Send([]byte(fmt.Sprintf("eaddrinuse=%v %v", errors.Is(err, syscall.EADDRINUSE), err)))
	select {
	case <-retry:
	case <-ctx.Done():
		return 0
	}
	ln, err := sockshare.Listen("tcp", addr)
	if err != nil {
		sockshare.Send([]byte("retry failed: " + err.Error()))
		<-ctx.Done()
		return 2
	}
	return serveHTTP(ctx, ln)
}

// TestFDsAfterManyHandoffs: the master's descriptor count after 10,000 rr
// handoffs is within 2 of the count before them.
func TestFDsAfterManyHandoffs(t *testing.T) {
	c := startCluster(t, sockshare.Config{Workers: 2, Policy: "rr"}, "http")
	if _, errs := tally(load(c.addr, "/", 100, 8)); len(errs) > 0 {
		t.Fatal(errs[0])
	}
	before := settledFDs(t, c)
	n := 10000
	if testing.Short() {
		n = 2000
	}
	if _, errs := tally(load(c.addr, "/", n, 16)); len(errs) > 0 {
		t.Fatalf("%d failed, first: %v", len(errs), errs[0])
	}
	after := settledFDs(t, c)
	if d := after - before; d > 2 || d < -2 {
		t.Fatalf("master fds: %d before, %d after %d handoffs", before, after, n)
	}
}

// settledFDs counts the master's descriptors once it holds no handed
// connection: every connection was answered, but the acknowledgements that
// close the master's copies may still be on their way, so wait (bounded)
// until nothing is pending or in flight and the count is stable.
func settledFDs(t *testing.T, c *cluster) int {
	t.Helper()
	n, busy := -1, 0
	settled := pollUntil(10*time.Second, func() bool {
		busy = 0
		for _, li := range c.m.Listeners() {
			busy += li.Pending + li.Inflight
		}
		if busy > 0 {
			n = -1
			return false
		}
		last := n
		n = openFDs(t)
		return n == last // the same count two polls in a row
	})
	if !settled {
		t.Fatalf("the master still holds %d handed connections after 10s (or its descriptor count keeps changing)", busy)
	}
	return n
}

// masterRole runs a master of 2 http workers in a child process of the
// test, prints "pids <master> <w1> <w2>" once every worker listens, with
// the address, and runs until SIGTERM.
func masterRole() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	var mu sync.Mutex
	listening := map[int]int{}
	printed := false
	var m *sockshare.Master
	env := []string{roleEnv + "=http"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, roleEnv+"=") {
			env = append(env, kv)
		}
	}
	m, err := sockshare.NewMaster(sockshare.Config{
		Workers: 2, Policy: os.Getenv("SOCKSHARE_POLICY"), Program: os.Args[0], Args: []string{}, Env: env,
		ShutdownTimeout: 5 * time.Second,
		OnEvent: func(e sockshare.Event) {
			mu.Lock()
			defer mu.Unlock()
			if e.Type == sockshare.EventListening {
				listening[e.WorkerID] = e.PID
				if len(listening) == 2 && !printed {
					printed = true
					pids := []string{strconv.Itoa(os.Getpid())}
					for _, p := range listening {
						pids = append(pids, strconv.Itoa(p))
					}
					fmt.Printf("ready %s pids %s\n", e.Addr, strings.Join(pids, " "))
				}
			}
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := m.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// startMasterProcess runs masterRole in a child process and returns it,
// the address and the pids (master first).
func startMasterProcess(t *testing.T, pol string) (*exec.Cmd, string, []int) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), roleEnv+"=master", "SOCKSHARE_POLICY="+pol)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(30 * time.Second):
		t.Fatal("master process did not become ready")
	}
	f := strings.Fields(line)
	if len(f) != 6 || f[0] != "ready" {
		t.Fatalf("master process said %q", line)
	}
	var pids []int
	for _, s := range f[3:] {
		p, _ := strconv.Atoi(s)
		pids = append(pids, p)
	}
	return cmd, f[1], pids
}

// waitGone waits until every pid has exited, using pidfds (they are not
// our children), and fails the test if one outlives the timeout.
func waitGone(t *testing.T, pids []int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for _, pid := range pids {
		fd, err := unix.PidfdOpen(pid, 0)
		if errors.Is(err, syscall.ESRCH) {
			continue
		}
		if err != nil {
			t.Skipf("pidfd_open: %v", err)
		}
		ms := int(time.Until(deadline).Milliseconds())
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, max(ms, 0))
		unix.Close(fd)
		if err != nil && !errors.Is(err, syscall.EINTR) {
			t.Fatalf("poll pidfd: %v", err)
		}
		if n == 0 {
			t.Fatalf("pid %d still alive %v after the master died", pid, timeout)
		}
	}
}

// TestWorkersDieWithMaster: SIGKILL of the master takes every worker down
// within a second.
func TestWorkersDieWithMaster(t *testing.T) {
	for _, p := range []string{"rr", "shared"} {
		t.Run(p, func(t *testing.T) {
			cmd, addr, pids := startMasterProcess(t, p)
			if r := get(addr, "/"); r.err != nil {
				t.Fatal(r.err)
			}
			cmd.Process.Kill()
			cmd.Wait()
			waitGone(t, pids[1:], time.Second)
		})
	}
}

// TestSIGTERMDrains: SIGTERM to the master lets an in-flight request
// finish, then the master exits 0 with every worker gone.
func TestSIGTERMDrains(t *testing.T) {
	for _, p := range allPolicies {
		t.Run(string(p), func(t *testing.T) {
			t.Parallel() // a master process of its own per policy
			cmd, addr, pids := startMasterProcess(t, string(p))
			// A slow request is in flight when the signal arrives.
			res := make(chan result, 1)
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "GET /work?sleep_ms=500 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			go func() {
				conn.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(conn)
				line, err := br.ReadString('\n')
				if err != nil {
					res <- result{err: err}
					return
				}
				res <- result{status: map[bool]int{true: 200}[strings.Contains(line, " 200 ")]}
			}()
			// Make sure the request reached a worker before the signal:
			// a second request on another connection is answered first.
			if r := get(addr, "/"); r.err != nil {
				t.Fatal(r.err)
			}
			cmd.Process.Signal(syscall.SIGTERM)
			if r := <-res; r.err != nil || r.status != 200 {
				t.Fatalf("in-flight request during shutdown: %+v", r)
			}
			err = cmd.Wait()
			if err != nil {
				t.Fatalf("master exit: %v", err)
			}
			waitGone(t, pids[1:], time.Second)
		})
	}
}

func TestBadConfig(t *testing.T) {
	_, err := sockshare.NewMaster(sockshare.Config{Policy: "x"})
	if !errors.Is(err, policy.ErrUnknownPolicy) || !strings.Contains(err.Error(), `unknown policy "x" (valid: shared, rr, leastconn, reuseport, sticky)`) {
		t.Errorf("unknown policy: %v", err)
	}
	for _, n := range []int{-1, sockshare.MaxWorkers + 1} {
		if _, err := sockshare.NewMaster(sockshare.Config{Workers: n}); !errors.Is(err, sockshare.ErrBadConfig) {
			t.Errorf("Workers=%d: %v; want ErrBadConfig", n, err)
		}
	}
}

func TestStandaloneListenIsPlain(t *testing.T) {
	ln, err := sockshare.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, ok := ln.(*net.TCPListener); !ok {
		t.Fatalf("standalone Listen returned %T; want *net.TCPListener", ln)
	}
	if _, err := sockshare.Listen("udp", "127.0.0.1:0"); !errors.Is(err, sockshare.ErrNetwork) {
		t.Fatalf("Listen(udp): %v; want ErrNetwork", err)
	}
	// A policy typo is refused standalone too, with the worker's text.
	lc := sockshare.ListenConfig{Policy: "rrr"}
	_, err = lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	const want = `listen tcp 127.0.0.1:0: policy "rrr": unknown policy "rrr" (valid: shared, rr, leastconn, reuseport, sticky)`
	if !errors.Is(err, policy.ErrUnknownPolicy) || err.Error() != want {
		t.Fatalf("standalone ListenConfig{Policy: rrr}: %v; want %s", err, want)
	}
	if sockshare.IsWorker() || sockshare.WorkerID() != 0 || sockshare.Slot() != -1 {
		t.Fatal("the test process is not a worker")
	}
}
