//go:build linux

package sockshare_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
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
}

var allPolicies = []policy.Name{policy.Shared, policy.RR, policy.LeastConn, policy.ReusePort}

// TestPoliciesServeShortConnections: every policy serves thousands of
// one-request connections, all answered 200, by both workers; rr's counts
// differ by at most one.
func TestPoliciesServeShortConnections(t *testing.T) {
	for _, p := range allPolicies {
		t.Run(string(p), func(t *testing.T) {
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
			c := startCluster(t, sockshare.Config{Workers: 2, Policy: string(p), RestartDelay: time.Hour}, "stall-slot0")
			results := make(chan result, 20)
			for range 20 {
				go func() { results <- get(c.addr, "/") }()
			}
			// Wait until the staller holds connections in its window.
			var stalled sockshare.WorkerInfo
			for deadline := time.Now().Add(10 * time.Second); ; {
				for _, w := range c.m.Workers() {
					if w.Slot == 0 {
						stalled = w
					}
				}
				if stalled.Inflight > 0 || time.Now().After(deadline) {
					break
				}
				runtime_Gosched()
			}
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

// runtime_Gosched yields while polling Master.Workers for state that
// advances through IPC; the poll is bounded by a deadline.
func runtime_Gosched() { time.Sleep(time.Millisecond) }

// TestWorkerKilledUnderLoad: SIGKILL of one worker under continuous rr
// load: nothing is refused, and failures are at most the requests the
// killed worker had taken (bounded by the concurrency).
func TestWorkerKilledUnderLoad(t *testing.T) {
	c := startCluster(t, sockshare.Config{Workers: 2, Policy: "rr"}, "http")
	const conc = 8
	stop := make(chan struct{})
	started, results := steadyLoad(c.addr, "/work?sleep_ms=2", conc, 200, stop)
	<-started
	victim := c.m.Workers()[0]
	killed := time.Now()
	syscall.Kill(victim.PID, syscall.SIGKILL)
	// Keep the load on until the slot is back and has served.
	var back time.Time
	c.waitFor("the slot to restart", 10*time.Second, func(evs []sockshare.Event, _ []string) bool {
		for _, e := range evs {
			if e.Type == sockshare.EventListening && e.Slot == victim.Slot && e.WorkerID != victim.ID {
				back = e.Time
				return true
			}
		}
		return false
	})
	if d := back.Sub(killed); d > time.Second {
		t.Errorf("slot %d came back after %v; want within 1s", victim.Slot, d)
	}
	close(stop)
	all := results()
	var failed int
	for _, r := range all {
		if r.err != nil {
			failed++
			if errors.Is(r.err, syscall.ECONNREFUSED) {
				t.Errorf("connection refused during the kill: %v", r.err)
			}
		}
	}
	if failed > conc {
		t.Fatalf("%d of %d requests failed; at most %d (the killed worker's in-flight) may", failed, len(all), conc)
	}
	if li := c.m.Listeners()[0]; li.Dropped != 0 {
		t.Fatalf("the master dropped %d connections it had accepted: %+v", li.Dropped, li)
	}
	t.Logf("%d requests, %d failed (in flight on the killed worker)", len(all), failed)
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
	deadline := time.Now().Add(10 * time.Second)
	for {
		busy := 0
		for _, li := range c.m.Listeners() {
			busy += li.Pending + li.Inflight
		}
		if busy == 0 {
			n := openFDs(t)
			runtime_Gosched()
			if openFDs(t) == n {
				return n
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the master still holds %d handed connections after 10s", busy)
		}
		runtime_Gosched()
	}
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
	if !errors.Is(err, policy.ErrUnknownPolicy) || !strings.Contains(err.Error(), `unknown policy "x" (valid: shared, rr, leastconn, reuseport)`) {
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
	const want = `listen tcp 127.0.0.1:0: policy "rrr": unknown policy "rrr" (valid: shared, rr, leastconn, reuseport)`
	if !errors.Is(err, policy.ErrUnknownPolicy) || err.Error() != want {
		t.Fatalf("standalone ListenConfig{Policy: rrr}: %v; want %s", err, want)
	}
	if sockshare.IsWorker() || sockshare.WorkerID() != 0 || sockshare.Slot() != -1 {
		t.Fatal("the test process is not a worker")
	}
}
