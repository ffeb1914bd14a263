//go:build linux

package sockshare_test

// TestRandomFaults: random sequences of faults under every policy, with a
// client running throughout, and after each sequence a check that what the
// master reports agrees with what the processes do.
//
// Faults: SIGKILL of a worker; a slot whose workers crash at start for a
// while (a file the test writes, crash-<slot>, makes the worker exit 1
// before it listens); Master.Reload; Master.Disconnect; a worker closing
// its listener and listening again on the same address. Reload and
// Disconnect run in the background, so they overlap with later faults.
//
// After each sequence settles:
//   - the client saw no hang: every connection that connected got an
//     answer or a clean error (refused, reset, EOF) before faultHang;
//   - Workers() lists exactly the workers forked and not exited, each a
//     running child of the test process, ready, one per slot at most;
//   - every slot serves (its worker answers through the shared address),
//     or was given up (EventGiveUp), or was emptied by a Disconnect;
//   - Listeners() has the one address while a worker listens (none
//     otherwise, and then connections are refused), and the dispatcher's
//     counters balance: nothing pending or in flight, Accepted == Taken;
//   - WaitReady returns nil when every slot not given up has a ready
//     worker, and does not return while one has none;
//   - then, once a Reload has brought every slot back if one was not
//     serving, every slot serves and the master's descriptor count is back
//     to its baseline.
//
// The cluster has 3 workers; slot 0 is never made to crash at start, and
// is spared a kill once it crashed MaxCrashes-2 times within the crash
// window, so it is never given up and the master never runs out of slots. A connection
// whose request a killed rr or leastconn worker had read before its
// acknowledgement left is handed to another worker half-read (README);
// that worker answers "idle" after faultIdle, which the client counts
// apart. UDP datagrams lost while a slot is down are counted, not failed:
// once settled, every datagram must be answered.
//
// Plain `go test` runs one sequence of 2-5 steps per policy (6 in all);
// SOCKSHARE_LONG=1 runs 40 sequences of 2-10 steps per policy (240);
// SOCKSHARE_FAULT_SEQUENCES=n sets the number per policy. SOCKSHARE_SEED
// replays a run (add -run TestRandomFaults/<network>-<policy> for one
// policy): the steps of every sequence follow from the seed, their timing
// does not.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sockshare/sockshare"
	"github.com/sockshare/sockshare/policy"
)

const (
	// faultDirEnv is the directory where a file crash-<slot> makes the
	// fault workers of that slot exit 1 at start.
	faultDirEnv = "SOCKSHARE_TEST_FAULT_DIR"
	// faultIdle: a fault worker answers "idle ..." and closes a connection
	// on which no line arrives for this long. Only a connection whose
	// request was read by a worker killed before its acknowledgement left,
	// then handed to another (README: "possibly half-read"), waits so.
	faultIdle = 2 * time.Second
	// faultHang: a client request unanswered this long is a hang.
	faultHang = 8 * time.Second

	faultWorkers     = 3
	faultMaxCrashes  = 4
	faultCrashWindow = 5 * time.Second
)

func init() {
	roles["fault-tcp"] = faultTCPWorker
	roles["fault-udp"] = faultUDPWorker
}

// crashAtStart reports whether the test tells this worker's slot to crash
// at start.
func crashAtStart() bool {
	dir := os.Getenv(faultDirEnv)
	if dir == "" {
		return false
	}
	_, err := os.Stat(filepath.Join(dir, "crash-"+strconv.Itoa(sockshare.Slot())))
	return err == nil
}

// relistenRequests returns the channel of the master's "relisten" messages.
func relistenRequests() <-chan struct{} {
	ch := make(chan struct{}, 64)
	sockshare.HandleMessages(func(p []byte) {
		if string(p) == "relisten" {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	})
	return ch
}

// faultTCPWorker serves a line protocol on $SOCKSHARE_TEST_ADDR: every line
// is answered "<worker id> <slot>". On "relisten" it closes its listener,
// listens again on the same address and reports "relistened ok". SIGTERM
// drains: the listener closes, each connection is answered and closed.
func faultTCPWorker() int {
	if crashAtStart() {
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	relisten := relistenRequests()
	addr := os.Getenv(addrEnv)
	s := &lineServer{reply: fmt.Sprintf("%d %d\n", sockshare.WorkerID(), sockshare.Slot())}
	ln, err := sockshare.Listen("tcp", addr)
	if err != nil {
		sockshare.Send([]byte("listen-error " + err.Error()))
		<-ctx.Done()
		return 2
	}
	done := s.serve(ln)
	for {
		select {
		case <-ctx.Done():
			s.draining.Store(true)
			ln.Close()
			<-done
			s.wait(3 * time.Second)
			return 0
		case <-relisten:
			if ctx.Err() != nil {
				sockshare.Send([]byte("relistened skipped"))
				continue
			}
			ln.Close()
			<-done
			if ln, err = sockshare.Listen("tcp", addr); err != nil {
				sockshare.Send([]byte("relistened error " + err.Error()))
				<-ctx.Done()
				s.wait(3 * time.Second)
				return 2
			}
			done = s.serve(ln)
			sockshare.Send([]byte("relistened ok"))
		}
	}
}

type lineServer struct {
	reply    string
	draining atomic.Bool
	conns    sync.WaitGroup
}

// serve accepts on ln until it is closed; the channel closes then.
func (s *lineServer) serve(ln net.Listener) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				continue // EMFILE on a handed descriptor: it went back to the master
			}
			s.conns.Add(1)
			go s.handle(c)
		}
	}()
	return done
}

func (s *lineServer) handle(c net.Conn) {
	defer s.conns.Done()
	defer c.Close()
	br := bufio.NewReader(c)
	for first := true; ; first = false {
		c.SetReadDeadline(time.Now().Add(faultIdle))
		if _, err := br.ReadString('\n'); err != nil {
			var ne net.Error
			if first && errors.As(err, &ne) && ne.Timeout() {
				io.WriteString(c, "idle "+s.reply)
			}
			return
		}
		if _, err := io.WriteString(c, s.reply); err != nil || s.draining.Load() {
			return
		}
	}
}

// wait waits for the open connections, at most d.
func (s *lineServer) wait(d time.Duration) {
	ch := make(chan struct{})
	go func() { s.conns.Wait(); close(ch) }()
	select {
	case <-ch:
	case <-time.After(d):
	}
}

// faultUDPWorker answers every datagram on $SOCKSHARE_TEST_ADDR with
// "<worker id> <payload>", relistens on "relisten" like faultTCPWorker, and
// exits 0 on SIGTERM.
func faultUDPWorker() int {
	if crashAtStart() {
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	relisten := relistenRequests()
	addr := os.Getenv(addrEnv)
	prefix := strconv.Itoa(sockshare.WorkerID()) + " "
	listen := func() (*net.UDPConn, error) {
		pc, err := sockshare.ListenPacket("udp", addr)
		if err != nil {
			return nil, err
		}
		return pc.(*net.UDPConn), nil
	}
	serve := func(conn *net.UDPConn) <-chan struct{} {
		done := make(chan struct{})
		go func() {
			defer close(done)
			buf := make([]byte, 2048)
			for {
				n, from, err := conn.ReadFromUDPAddrPort(buf)
				if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) {
					return
				}
				if err != nil {
					continue
				}
				conn.WriteToUDPAddrPort(append([]byte(prefix), buf[:n]...), from)
			}
		}()
		return done
	}
	conn, err := listen()
	if err != nil {
		sockshare.Send([]byte("listen-error " + err.Error()))
		<-ctx.Done()
		return 2
	}
	done := serve(conn)
	for {
		select {
		case <-ctx.Done():
			// A deadline, not Close: the reply to the last datagram read
			// still leaves.
			conn.SetReadDeadline(time.Now())
			<-done
			conn.Close()
			return 0
		case <-relisten:
			if ctx.Err() != nil {
				sockshare.Send([]byte("relistened skipped"))
				continue
			}
			conn.Close()
			<-done
			if conn, err = listen(); err != nil {
				sockshare.Send([]byte("relistened error " + err.Error()))
				<-ctx.Done()
				return 2
			}
			done = serve(conn)
			sockshare.Send([]byte("relistened ok"))
		}
	}
}

// ---------------------------------------------------------------------
// The test

type faultConfig struct{ network, policy string }

var faultConfigs = []faultConfig{
	{"tcp", "shared"}, {"tcp", "rr"}, {"tcp", "leastconn"}, {"tcp", "reuseport"},
	{"udp", "shared"}, {"udp", "reuseport"},
}

func TestRandomFaults(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("SOCKSHARE_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("SOCKSHARE_SEED=%q: %v", s, err)
		}
		seed = v
	}
	seqs, steps := 1, 5
	if os.Getenv("SOCKSHARE_LONG") == "1" {
		seqs, steps = 40, 10
	}
	if s := os.Getenv("SOCKSHARE_FAULT_SEQUENCES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("SOCKSHARE_FAULT_SEQUENCES=%q: want a positive number", s)
		}
		seqs = n
	}
	t.Logf("seed %d (replay: SOCKSHARE_SEED=%d), %d sequences per policy", seed, seed, seqs)
	start := time.Now()
	var total faultTotals
	for i, fc := range faultConfigs {
		t.Run(fc.network+"-"+fc.policy, func(t *testing.T) {
			t.Logf("seed %d", seed)
			r := newFaultRun(t, fc, rand.New(rand.NewPCG(seed, uint64(i))))
			for n := range seqs {
				r.sequence(n, steps)
			}
			t.Logf("%s", &r.totals)
			total.add(&r.totals)
		})
	}
	t.Logf("seed %d: %d sequences in %v; %s", seed, total.sequences, time.Since(start).Round(time.Second), &total)
}

// faultRun is one cluster under one policy and the sequences run on it.
type faultRun struct {
	t       *testing.T
	c       *cluster
	fc      faultConfig
	rng     *rand.Rand
	dir     string
	addr    string
	baseFDs int
	totals  faultTotals

	// One sequence's record. mu guards what the background operations
	// touch: failures, inflight and crashTimers.
	mu           sync.Mutex
	ops          sync.WaitGroup
	inflight     map[string]int
	failures     []string
	crashTimers  map[int]*time.Timer
	reloads      atomic.Int32
	disconnected map[int]bool // slots a Disconnect may have emptied
	killed       []int        // worker ids sent SIGKILL
	relistens    map[int]int  // worker id → "relisten" messages sent
	steps        []string
}

func newFaultRun(t *testing.T, fc faultConfig, rng *rand.Rand) *faultRun {
	t.Helper()
	var logs logSink
	t.Cleanup(func() {
		if t.Failed() {
			s := logs.String()
			t.Logf("master log (last 8 KiB):\n%s", s[max(0, len(s)-8<<10):])
		}
	})
	r := &faultRun{t: t, fc: fc, rng: rng, dir: t.TempDir(), addr: freeAddr(t, fc.network)}
	cfg := sockshare.Config{
		Workers: faultWorkers, Policy: fc.policy,
		RestartDelay: 20 * time.Millisecond, MaxRestartDelay: 200 * time.Millisecond,
		MaxCrashes: faultMaxCrashes, CrashWindow: faultCrashWindow,
		ShutdownTimeout: 5 * time.Second,
		Logger:          slog.New(slog.NewTextHandler(&logs, nil)),
	}
	r.c = startCluster(t, cfg, "fault-"+fc.network, addrEnv+"="+r.addr, faultDirEnv+"="+r.dir)
	if r.c.addr != r.addr {
		t.Fatalf("the workers listen on %s, not %s", r.c.addr, r.addr)
	}
	// Every worker serves; this also opens what the master opens lazily.
	r.resetSequence()
	r.settle("start")
	r.check("start", true)
	r.baseFDs = quietFDs(t, r.c)
	return r
}

// freeAddr returns a loopback address with a port free for network now.
// The workers listen on it by its number, so that a worker listening again
// uses the same address string, and so rejoins the group (or binds it
// afresh when it was the group's last member).
func freeAddr(t *testing.T, network string) string {
	t.Helper()
	if network == "udp" {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		return pc.LocalAddr().String()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func (r *faultRun) resetSequence() {
	r.inflight = map[string]int{}
	r.failures = nil
	r.crashTimers = map[int]*time.Timer{}
	r.disconnected = map[int]bool{}
	r.killed = nil
	r.relistens = map[int]int{}
	r.steps = nil
}

// sequence runs one random sequence of faults with the client running,
// lets it settle, checks, restores every slot and checks again.
func (r *faultRun) sequence(n, maxSteps int) {
	t := r.t
	seed := r.rng.Uint64()
	rng := rand.New(rand.NewPCG(seed, 0))
	r.resetSequence()
	start := time.Now()
	cl := r.startClient()
	for range 2 + rng.IntN(maxSteps-1) {
		// A fixed number of draws per step, so the steps follow from the
		// seed whatever the workers do.
		kind, slot, param := rng.IntN(100), rng.IntN(faultWorkers), rng.IntN(1000)
		pause := time.Duration(10+rng.IntN(140)) * time.Millisecond
		r.step(kind, slot, param)
		time.Sleep(pause) // lets the client run between faults
	}
	name := fmt.Sprintf("sequence %d (seed %d): %s", n, seed, strings.Join(r.steps, ", "))
	t.Logf("%s", name)
	r.settle(name)
	st := cl.stop(t)
	r.totals.client(st)
	r.checkClient(name, st)
	if r.check(name, false) {
		r.restore(name)
	}
	if after := waitFDs(t, r.c, r.baseFDs); after-r.baseFDs > 2 || r.baseFDs-after > 2 {
		t.Errorf("%s: the master holds %d descriptors, %d at the start", name, after, r.baseFDs)
	}
	r.totals.sequences++
	t.Logf("sequence %d done in %v; client: %s", n, time.Since(start).Round(time.Millisecond), st)
}

func (r *faultRun) note(format string, args ...any) {
	r.steps = append(r.steps, fmt.Sprintf(format, args...))
}

func (r *faultRun) fail(format string, args ...any) {
	r.mu.Lock()
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

// async runs f in the background; settle waits for it.
func (r *faultRun) async(name string, f func()) {
	r.mu.Lock()
	r.inflight[name]++
	r.mu.Unlock()
	r.ops.Add(1)
	go func() {
		defer r.ops.Done()
		f()
		r.mu.Lock()
		if r.inflight[name]--; r.inflight[name] == 0 {
			delete(r.inflight, name)
		}
		r.mu.Unlock()
	}()
}

func (r *faultRun) step(kind, slot, param int) {
	switch {
	case kind < 25:
		r.totals.kills++
		r.kill(slot, param)
	case kind < 40:
		r.totals.crashes++
		r.crash(slot, param)
	case kind < 55:
		r.totals.reloads++
		r.reload()
	case kind < 70:
		r.totals.disconnects++
		r.disconnect(slot, param)
	case kind < 92:
		r.totals.relistens++
		r.relisten(slot, param)
	default:
		r.note("pause")
	}
}

// workerIn returns one of slot's workers (param picks when a reload has
// two there), or false.
func (r *faultRun) workerIn(slot, param int) (sockshare.WorkerInfo, bool) {
	var in []sockshare.WorkerInfo
	for _, w := range r.c.m.Workers() {
		if w.Slot == slot {
			in = append(in, w)
		}
	}
	if len(in) == 0 {
		return sockshare.WorkerInfo{}, false
	}
	return in[param%len(in)], true
}

// recentCrashes counts slot's unasked exits within the crash window (and
// a margin), as the master counts them towards giving the slot up, or
// more (a reload forgets them).
func (r *faultRun) recentCrashes(slot int) int {
	since := time.Now().Add(-faultCrashWindow - time.Second)
	n := 0
	for _, e := range r.c.snapshot() {
		if e.Type == sockshare.EventExit && e.Slot == slot && !e.Asked && e.Time.After(since) {
			n++
		}
	}
	return n
}

func (r *faultRun) kill(slot, param int) {
	// Slot 0 is never given up, so the master never runs out of slots
	// (Run would return ErrAllWorkersFailed).
	if slot == 0 && r.recentCrashes(0) >= faultMaxCrashes-2 {
		r.note("kill s0 spared")
		return
	}
	w, ok := r.workerIn(slot, param)
	if !ok {
		r.note("kill s%d: none", slot)
		return
	}
	syscall.Kill(w.PID, syscall.SIGKILL)
	r.killed = append(r.killed, w.ID)
	r.note("kill w%d/s%d", w.ID, slot)
}

func (r *faultRun) crash(slot, param int) {
	slot = 1 + slot%(faultWorkers-1) // never slot 0: see kill
	d := time.Duration(50+param*3/2) * time.Millisecond
	path := filepath.Join(r.dir, "crash-"+strconv.Itoa(slot))
	r.mu.Lock()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		r.mu.Unlock()
		r.t.Fatal(err)
	}
	if old := r.crashTimers[slot]; old != nil {
		old.Stop()
	}
	var tm *time.Timer
	tm = time.AfterFunc(d, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.crashTimers[slot] == tm {
			os.Remove(path)
			delete(r.crashTimers, slot)
		}
	})
	r.crashTimers[slot] = tm
	r.mu.Unlock()
	if param%3 == 0 {
		r.note("crash s%d %v", slot, d)
		return
	}
	// Kill its worker, so that the restart crashes.
	w, ok := r.workerIn(slot, param)
	if !ok {
		r.note("crash s%d %v, no worker", slot, d)
		return
	}
	syscall.Kill(w.PID, syscall.SIGKILL)
	r.killed = append(r.killed, w.ID)
	r.note("crash s%d %v, kill w%d", slot, d, w.ID)
}

func (r *faultRun) reload() {
	if r.reloads.Load() >= 2 {
		r.note("reload skipped")
		return
	}
	r.reloads.Add(1)
	r.note("reload")
	r.async("reload", func() {
		defer r.reloads.Add(-1)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		err := r.c.m.Reload(ctx)
		switch {
		case err == nil:
		case ctx.Err() != nil:
			r.fail("Reload did not return within 60s: %v", err)
		case strings.Contains(err.Error(), "exited before it was ready"):
			// A replacement crashed at start, was killed or disconnected.
		default:
			r.fail("Reload: %v", err)
		}
	})
}

func (r *faultRun) disconnect(slot, param int) {
	w, ok := r.workerIn(slot, param)
	if !ok {
		r.note("disconnect s%d: none", slot)
		return
	}
	r.disconnected[slot] = true
	r.note("disconnect w%d/s%d", w.ID, slot)
	r.async(fmt.Sprintf("disconnect w%d", w.ID), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := r.c.m.Disconnect(ctx, w.ID)
		switch {
		case errors.Is(err, sockshare.ErrUnknownWorker):
			// It exited first.
		case err != nil:
			r.fail("Disconnect(%d): %v", w.ID, err)
		default:
			// Disconnect returns once the process has exited.
			if _, err := os.Stat("/proc/" + strconv.Itoa(w.PID)); err == nil {
				if st, _ := procStat(w.PID); st.ppid == os.Getpid() {
					r.fail("Disconnect(%d) returned with pid %d still running (%+v)", w.ID, w.PID, st)
				}
			}
		}
	})
}

func (r *faultRun) relisten(slot, param int) {
	w, ok := r.workerIn(slot, param)
	if !ok {
		r.note("relisten s%d: none", slot)
		return
	}
	if w.State != sockshare.StateReady {
		// A worker drops messages that arrive before it sets its
		// handler (HandleMessages); the fault roles set it before
		// their Listen, which makes them ready.
		r.note("relisten w%d: %v", w.ID, w.State)
		return
	}
	if err := r.c.m.Send(w.ID, []byte("relisten")); err != nil {
		r.note("relisten w%d: %v", w.ID, err)
		return
	}
	r.relistens[w.ID]++
	r.note("relisten w%d/s%d", w.ID, slot)
}

// ---------------------------------------------------------------------
// Settling and checking

// faultView is the cluster as the events tell it.
type faultView struct {
	live   map[int]sockshare.Event // fork events of workers not exited
	exited map[int]bool
	ready  map[int]bool
	slots  [faultWorkers]slotView
}

// slotView orders a slot's events by their index in the event log (the
// order OnEvent saw them), not by their times.
type slotView struct {
	lastFork, lastGiveUp, lastRestart int // indexes + 1; 0: none
	lastCrash, lastExit               int // exits: unasked, any
	restartDue                        time.Time
}

func viewOf(evs []sockshare.Event) faultView {
	v := faultView{live: map[int]sockshare.Event{}, exited: map[int]bool{}, ready: map[int]bool{}}
	for i, e := range evs {
		var s *slotView
		if e.Slot >= 0 && e.Slot < faultWorkers {
			s = &v.slots[e.Slot]
		}
		switch e.Type {
		case sockshare.EventFork:
			v.live[e.WorkerID] = e
			s.lastFork = i + 1
		case sockshare.EventExit:
			delete(v.live, e.WorkerID)
			v.exited[e.WorkerID] = true
			if s != nil {
				s.lastExit = i + 1
				if !e.Asked {
					s.lastCrash = i + 1
				}
			}
		case sockshare.EventReady:
			v.ready[e.WorkerID] = true
		case sockshare.EventGiveUp:
			s.lastGiveUp = i + 1
		case sockshare.EventRestart:
			s.lastRestart = i + 1
			if due := e.Time.Add(e.Delay); due.After(s.restartDue) {
				s.restartDue = due
			}
		}
	}
	return v
}

// givenUp: the slot's last give-up came after its last fork (only a reload
// forks into a given-up slot, and it revives the slot).
func (v *faultView) givenUp(slot int) bool {
	s := v.slots[slot]
	return s.lastGiveUp > s.lastFork
}

func (v *faultView) liveIn(slot int) []int {
	var ids []int
	for id, e := range v.live {
		if e.Slot == slot {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// snapshot returns the events so far.
func (c *cluster) snapshot() []sockshare.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.events)
}

func countMessages(msgs []string, prefix string) int {
	n := 0
	for _, m := range msgs {
		if strings.HasPrefix(m, prefix) {
			n++
		}
	}
	return n
}

// settle waits for the background operations, ends every crash-at-start,
// and waits until the events show a cluster at rest: every killed worker
// exited, every relisten answered, every restart done (or the slot given
// up), every live worker ready.
func (r *faultRun) settle(name string) {
	t := r.t
	done := make(chan struct{})
	go func() { r.ops.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(90 * time.Second):
		r.mu.Lock()
		ops := fmt.Sprint(r.inflight)
		r.mu.Unlock()
		t.Fatalf("%s: operations still running after 90s: %s\nevents:\n%s", name, ops, r.c.eventLog())
	}
	r.mu.Lock()
	for slot, tm := range r.crashTimers {
		tm.Stop()
		os.Remove(filepath.Join(r.dir, "crash-"+strconv.Itoa(slot)))
	}
	clear(r.crashTimers)
	failures := r.failures
	r.mu.Unlock()
	for _, f := range failures {
		t.Errorf("%s: %s", name, f)
	}
	var pokes []*time.Timer
	defer func() {
		for _, p := range pokes {
			p.Stop()
		}
	}()
	var why string
	defer func() {
		if t.Failed() && why != "" {
			t.Logf("%s: not settled: %s", name, why)
		}
	}()
	r.c.waitFor(name+": the cluster to settle", 60*time.Second, func(evs []sockshare.Event, msgs []string) bool {
		v := viewOf(evs)
		// The master lists a worker before its fork event and drops it
		// before its exit event: the two agree once neither is on its way.
		ws := r.c.m.Workers()
		if len(ws) != len(v.live) {
			why = fmt.Sprintf("Workers() %v, forked and not exited %v", ws, v.live)
			return false
		}
		for _, w := range ws {
			if _, ok := v.live[w.ID]; !ok {
				why = fmt.Sprintf("Workers() %v, forked and not exited %v", ws, v.live)
				return false
			}
		}
		for _, id := range r.killed {
			if !v.exited[id] {
				why = fmt.Sprintf("killed worker %d has not exited", id)
				return false
			}
		}
		for id, n := range r.relistens {
			if !v.exited[id] && countMessages(msgs, fmt.Sprintf("%d relistened ", id)) < n {
				why = fmt.Sprintf("worker %d has not answered its %d relisten messages", id, n)
				return false
			}
		}
		for id := range v.live {
			if !v.ready[id] {
				why = fmt.Sprintf("worker %d is not ready", id)
				return false
			}
		}
		for slot := range faultWorkers {
			s := v.slots[slot]
			live := len(v.liveIn(slot)) > 0
			unresolved := s.lastRestart > s.lastFork && s.lastRestart > s.lastGiveUp
			if unresolved && !live {
				why = fmt.Sprintf("slot %d: the restart is still to come", slot)
				return false
			}
			if !live && s.lastCrash == s.lastExit && s.lastCrash > max(s.lastRestart, s.lastGiveUp) {
				// The master emits a crash's restart or give-up just
				// after its exit: not seen yet.
				why = fmt.Sprintf("slot %d: no restart or give-up after its crash yet", slot)
				return false
			}
			// A restart timer that finds a worker in its slot (a reload's,
			// or the old one a failed reload gave the slot back to) does
			// nothing, and says nothing; one that finds the slot empty
			// again (a Disconnect) starts a worker. Wait until every such
			// timer has fired.
			if unresolved || !live && !v.givenUp(slot) {
				if wait := time.Until(s.restartDue.Add(time.Second)); wait > 0 {
					why = fmt.Sprintf("slot %d: a restart timer may still fire", slot)
					pokes = append(pokes, time.AfterFunc(wait, r.c.poke))
					return false
				}
			}
		}
		why = ""
		return true
	})
	r.c.mu.Lock()
	msgs := slices.Clone(r.c.messages)
	r.c.mu.Unlock()
	for _, m := range msgs {
		if strings.Contains(m, " relistened error") || strings.Contains(m, " listen-error") {
			t.Errorf("%s: a worker says: %s", name, m)
		}
	}
	for _, e := range r.c.snapshot() {
		if e.Type == sockshare.EventListenError {
			t.Errorf("%s: %v", name, e)
		}
	}
}

// check compares what the master reports with the processes and the
// address, and reports whether some slot does not serve (given up, or
// emptied by a Disconnect). all: every slot must serve.
func (r *faultRun) check(name string, all bool) (notServing bool) {
	t := r.t
	t.Helper()
	v := viewOf(r.c.snapshot())

	// Workers() is exactly the live workers, each a running child.
	ws := r.c.m.Workers()
	listed := map[int]sockshare.WorkerInfo{}
	for _, w := range ws {
		listed[w.ID] = w
		if f, ok := v.live[w.ID]; !ok {
			t.Errorf("%s: Workers() lists worker %d (pid %d), which exited or was never forked", name, w.ID, w.PID)
		} else if f.PID != w.PID || f.Slot != w.Slot {
			t.Errorf("%s: Workers() says worker %d is pid %d in slot %d; forked as pid %d in slot %d", name, w.ID, w.PID, w.Slot, f.PID, f.Slot)
		}
		if w.State != sockshare.StateReady {
			t.Errorf("%s: worker %d is %v, want ready", name, w.ID, w.State)
		}
		st, err := procStat(w.PID)
		switch {
		case err != nil:
			t.Errorf("%s: worker %d (pid %d) is not running: %v", name, w.ID, w.PID, err)
		case st.state == "Z" || st.ppid != os.Getpid():
			t.Errorf("%s: worker %d (pid %d) is %+v, not a running child of the master", name, w.ID, w.PID, st)
		}
	}
	for id, f := range v.live {
		if _, ok := listed[id]; !ok {
			t.Errorf("%s: worker %d (pid %d, slot %d) was forked and has not exited, but Workers() does not list it", name, id, f.PID, f.Slot)
		}
	}

	// Every slot serves, or was given up, or a Disconnect emptied it.
	serving := map[int]bool{}
	for slot := range faultWorkers {
		live := v.liveIn(slot)
		switch {
		case len(live) > 1:
			t.Errorf("%s: slot %d has %d workers %v", name, slot, len(live), live)
			fallthrough
		case len(live) == 1:
			for _, id := range live {
				serving[id] = true
			}
			if v.givenUp(slot) {
				t.Logf("%s: slot %d was given up and still has worker %v", name, slot, live)
			}
		case all:
			t.Errorf("%s: slot %d has no worker", name, slot)
		case v.givenUp(slot):
			notServing = true
			r.totals.givenUp++
		case r.disconnected[slot]:
			notServing = true
			r.totals.emptied++
		default:
			t.Errorf("%s: slot %d has no worker, was not given up and was not disconnected", name, slot)
		}
	}
	if !r.probe(name, serving) {
		// For the report: the sockets on the port, and whether it lasts.
		out, _ := exec.Command("ss", "-tuanpe", "sport", "=", ":"+r.addr[strings.LastIndexByte(r.addr, ':')+1:]).CombinedOutput()
		t.Logf("%s: sockets on the port:\n%s\nWorkers(): %+v\nevents:\n%s", name, out, r.c.m.Workers(), r.c.eventLog())
		if r.probe(name+", probed again", serving) {
			t.Logf("%s: the second probe passed", name)
		}
	}
	r.checkListeners(name, len(serving) > 0)

	// WaitReady agrees.
	allReady := true
	for slot := range faultWorkers {
		if !v.givenUp(slot) && len(v.liveIn(slot)) == 0 {
			allReady = false
		}
	}
	wait := 10 * time.Second
	if !allReady {
		wait = 300 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	err := r.c.m.WaitReady(ctx)
	cancel()
	if allReady && err != nil {
		t.Errorf("%s: WaitReady = %v with every slot ready or given up", name, err)
	}
	if !allReady && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("%s: WaitReady = %v with an empty slot not given up; want it to wait", name, err)
	}
	return notServing
}

// checkListeners: one address while a worker listens, none otherwise, and
// a dispatcher's counters balance once nothing is in flight.
func (r *faultRun) checkListeners(name string, listening bool) {
	t := r.t
	t.Helper()
	ls := r.c.m.Listeners()
	if !listening {
		if len(ls) != 0 {
			t.Errorf("%s: Listeners() = %+v with no worker", name, ls)
		}
		return
	}
	if len(ls) != 1 {
		t.Errorf("%s: Listeners() = %+v; want one", name, ls)
		return
	}
	li := ls[0]
	if li.Addr != r.addr || li.Network != r.fc.network || li.Policy != policy.Name(r.fc.policy) {
		t.Errorf("%s: Listeners() = %+v; want %s %s under %s", name, li, r.fc.network, r.addr, r.fc.policy)
	}
	if r.fc.network != "tcp" || r.fc.policy == "shared" {
		return
	}
	// Acknowledgements travel after the answers: wait (bounded) until
	// nothing is pending or in flight.
	quiet := pollUntil(10*time.Second, func() bool {
		if ls = r.c.m.Listeners(); len(ls) == 1 {
			li = ls[0]
		}
		return len(ls) != 1 || li.Pending == 0 && li.Inflight == 0
	})
	if len(ls) != 1 {
		t.Errorf("%s: Listeners() = %+v; want one", name, ls)
		return
	}
	if !quiet {
		t.Errorf("%s: %d connections pending and %d in flight 10s after the client stopped: %+v", name, li.Pending, li.Inflight, li)
		return
	}
	if li.Accepted != li.Taken || li.Dropped != 0 {
		t.Errorf("%s: the dispatcher accepted %d connections, workers took %d, dropped %d: %+v", name, li.Accepted, li.Taken, li.Dropped, li)
	}
}

// restore brings every slot back with a Reload and checks again.
func (r *faultRun) restore(name string) {
	r.totals.restores++
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := r.c.m.Reload(ctx); err != nil {
		r.t.Errorf("%s: restoring Reload: %v", name, err)
	}
	r.c.waitFor(name+": every slot back", 30*time.Second, func(evs []sockshare.Event, _ []string) bool {
		v := viewOf(evs)
		for slot := range faultWorkers {
			live := v.liveIn(slot)
			if len(live) != 1 || !v.ready[live[0]] {
				return false
			}
		}
		return true
	})
	r.check(name+", restored", true)
}

type procInfo struct {
	state string
	ppid  int
}

// procStat reads a process's state and parent from /proc.
func procStat(pid int) (procInfo, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procInfo{}, err
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 2 {
		return procInfo{}, fmt.Errorf("malformed /proc/%d/stat %q", pid, b)
	}
	ppid, _ := strconv.Atoi(f[1])
	return procInfo{state: f[0], ppid: ppid}, nil
}

// probe checks that every worker in want answers through the address, and
// that only they do. With none, the address must refuse. It reports
// whether all went well.
func (r *faultRun) probe(name string, want map[int]bool) (ok bool) {
	t := r.t
	t.Helper()
	if len(want) == 0 {
		return r.probeRefused(name)
	}
	ok = true
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf(format, args...)
		ok = false
	}
	seen := map[int]bool{}
	deadline := time.Now().Add(15 * time.Second)
	for round := 0; len(seen) < len(want); round++ {
		if time.Now().After(deadline) {
			fail("%s: after %d rounds, only workers %v of %v answered", name, round, seen, want)
			return ok
		}
		// Several at once, held open until all are answered: leastconn
		// then spreads them, and shared's workers all get to accept.
		var ids []int
		var err error
		if r.fc.network == "tcp" {
			ids, err = probeTCPRound(r.addr, 2*len(want)+2)
		} else {
			ids, err = r.probeUDPRound(name, want, 4*len(want))
		}
		if err != nil {
			fail("%s: probe: %v", name, err)
			return ok
		}
		for _, id := range ids {
			if !want[id] {
				fail("%s: worker %d answered; the live workers are %v", name, id, want)
			}
			seen[id] = true
		}
	}
	return ok
}

// probeTCPRound opens n connections, sends a line on each, and returns
// the worker ids that answered, closing the connections last.
func probeTCPRound(addr string, n int) ([]int, error) {
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return nil, err
		}
		conns = append(conns, c)
		c.SetDeadline(time.Now().Add(faultHang))
		if _, err := io.WriteString(c, "probe\n"); err != nil {
			return nil, err
		}
	}
	var ids []int
	for _, c := range conns {
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("%v -> %v: %w", c.LocalAddr(), c.RemoteAddr(), err)
		}
		var id, slot int
		if _, err := fmt.Sscanf(line, "%d %d", &id, &slot); err != nil {
			return nil, fmt.Errorf("answer %q: %w", line, err)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// probeUDPRound sends one datagram (resent while unanswered, as udpFlow
// does) on each of n new flows and returns the worker ids that answered.
func (r *faultRun) probeUDPRound(name string, want map[int]bool, n int) ([]int, error) {
	flows := make([]*udpFlow, n)
	var wg sync.WaitGroup
	for i := range flows {
		flows[i] = newUDPFlow(r.t, r.addr, want)
		wg.Go(func() {
			flows[i].exchange("probe " + strconv.Itoa(i))
			flows[i].finish()
		})
	}
	wg.Wait()
	var ids []int
	var errs []error
	for i, f := range flows {
		errs = append(errs, f.errs...)
		for p, n := range f.sent {
			if len(f.answers[p]) == 0 {
				errs = append(errs, fmt.Errorf("flow %d (%v): %q sent %d times, never answered", i, f.c.LocalAddr(), p, n))
			}
		}
		for id := range f.perWorker() {
			ids = append(ids, id)
		}
	}
	return ids, errors.Join(errs...)
}

// probeRefused: with no worker, no group holds the address (DESIGN,
// invariant 7), so a connection or datagram is refused.
func (r *faultRun) probeRefused(name string) bool {
	t := r.t
	t.Helper()
	if r.fc.network == "tcp" {
		c, err := net.DialTimeout("tcp", r.addr, 5*time.Second)
		if err == nil {
			c.Close()
			t.Errorf("%s: no worker listens, yet %s accepted a connection", name, r.addr)
			return false
		} else if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("%s: no worker listens; dial: %v, want connection refused", name, err)
			return false
		}
		return true
	}
	c, err := net.Dial("udp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("anyone?"))
	if _, err := c.Read(make([]byte, 64)); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("%s: no worker listens; a datagram to %s: %v, want refused (ICMP port unreachable)", name, r.addr, err)
		return false
	}
	return true
}

// ---------------------------------------------------------------------
// The client

// faultClient runs requests until stopped and counts their outcomes: ok,
// idle (a half-read handoff, answered "idle" by the worker it went to),
// refused, reset, eof, dial-timeout, hang and other; for UDP ok, lost,
// refused and other.
type faultClient struct {
	stopc chan struct{}
	wg    sync.WaitGroup

	mu      sync.Mutex
	counts  map[string]int
	details map[string][]string // first few of each failure kind
}

type clientStats struct {
	counts  map[string]int
	details map[string][]string
}

func (s clientStats) String() string {
	keys := make([]string, 0, len(s.counts))
	for k := range s.counts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%d ", k, s.counts[k])
	}
	return strings.TrimSpace(b.String())
}

func (r *faultRun) startClient() *faultClient {
	cl := &faultClient{stopc: make(chan struct{}), counts: map[string]int{}, details: map[string][]string{}}
	for i := range 4 {
		cl.wg.Add(1)
		if r.fc.network == "tcp" {
			go cl.tcpLoop(r.addr)
		} else {
			go cl.udpLoop(r.addr, i)
		}
	}
	return cl
}

func (cl *faultClient) record(outcome, detail string) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	cl.counts[outcome]++
	if outcome != "ok" && len(cl.details[outcome]) < 5 {
		cl.details[outcome] = append(cl.details[outcome], time.Now().Format("15:04:05.000")+" "+detail)
	}
}

func (cl *faultClient) stopped() bool {
	select {
	case <-cl.stopc:
		return true
	default:
		return false
	}
}

// stop ends the client once its requests in progress are done.
func (cl *faultClient) stop(t *testing.T) clientStats {
	close(cl.stopc)
	done := make(chan struct{})
	go func() { cl.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(faultHang + 10*time.Second):
		t.Fatalf("the client did not stop within %v", faultHang+10*time.Second)
	}
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return clientStats{counts: maps(cl.counts), details: cl.details}
}

func maps(m map[string]int) map[string]int {
	c := make(map[string]int, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func (cl *faultClient) tcpLoop(addr string) {
	defer cl.wg.Done()
	for !cl.stopped() {
		outcome, detail := tcpRequest(addr)
		cl.record(outcome, detail)
		if outcome != "ok" && outcome != "idle" {
			time.Sleep(5 * time.Millisecond) // no busy loop while refused
		}
	}
}

// tcpRequest makes one request on a new connection.
func tcpRequest(addr string) (outcome, detail string) {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return classify("dial", err), err.Error()
	}
	defer c.Close()
	start := time.Now()
	c.SetDeadline(start.Add(faultHang))
	at := func(err error) string {
		return fmt.Sprintf("%v after %v: %v", c.LocalAddr(), time.Since(start).Round(time.Millisecond), err)
	}
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		return classify("write", err), at(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return classify("read", err), at(err)
	}
	if strings.HasPrefix(line, "idle ") {
		return "idle", at(errors.New(strings.TrimSpace(line)))
	}
	return "ok", ""
}

func classify(stage string, err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.As(err, &ne) && ne.Timeout():
		if stage == "dial" {
			return "dial-timeout"
		}
		return "hang"
	}
	return "other"
}

// udpLoop sends datagrams one at a time, each answered or lost within a
// second, on a new socket every 16 (a new flow, for reuseport's hash).
func (cl *faultClient) udpLoop(addr string, k int) {
	defer cl.wg.Done()
	var conn net.Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	buf := make([]byte, 2048)
	for i := 0; !cl.stopped(); i++ {
		if i%16 == 0 {
			if conn != nil {
				conn.Close()
			}
			var err error
			if conn, err = net.Dial("udp", addr); err != nil {
				cl.record("other", err.Error())
				return
			}
		}
		payload := fmt.Sprintf("c%d-%d", k, i)
		if _, err := conn.Write([]byte(payload)); err != nil {
			cl.record(udpClassify(err), err.Error())
			time.Sleep(5 * time.Millisecond)
			continue
		}
		conn.SetReadDeadline(time.Now().Add(time.Second))
		for {
			n, err := conn.Read(buf)
			if err != nil {
				cl.record(udpClassify(err), payload+": "+err.Error())
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					time.Sleep(5 * time.Millisecond)
				}
				break
			}
			if strings.HasSuffix(string(buf[:n]), " "+payload) {
				cl.record("ok", "")
				break
			}
			// A late answer to an earlier datagram.
		}
	}
}

func udpClassify(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "lost"
	}
	return "other"
}

// checkClient: no connection that connected hung, and no error outside
// the clean ones.
func (r *faultRun) checkClient(name string, st clientStats) {
	t := r.t
	t.Helper()
	for _, k := range []string{"hang", "other", "dial-timeout"} {
		if st.counts[k] > 0 {
			t.Errorf("%s: client: %d %s, e.g. %q (client: %v)", name, st.counts[k], k, st.details[k], st)
		}
	}
	if st.counts["ok"] == 0 {
		t.Errorf("%s: the client got no answer at all: %v", name, st)
	}
	if st.counts["idle"] > 0 {
		t.Logf("%s: %d connections handed on half-read (README), e.g. %q", name, st.counts["idle"], st.details["idle"])
	}
}

// faultTotals sums a run up.
type faultTotals struct {
	sequences                                       int
	kills, crashes, reloads, disconnects, relistens int
	givenUp, emptied, restores                      int
	outcomes                                        map[string]int
}

func (a *faultTotals) client(st clientStats) {
	if a.outcomes == nil {
		a.outcomes = map[string]int{}
	}
	for k, v := range st.counts {
		a.outcomes[k] += v
	}
}

func (a *faultTotals) add(b *faultTotals) {
	a.sequences += b.sequences
	a.kills += b.kills
	a.crashes += b.crashes
	a.reloads += b.reloads
	a.disconnects += b.disconnects
	a.relistens += b.relistens
	a.givenUp += b.givenUp
	a.emptied += b.emptied
	a.restores += b.restores
	a.client(clientStats{counts: b.outcomes})
}

func (a *faultTotals) String() string {
	return fmt.Sprintf("%d sequences: %d kills, %d crash-at-start, %d reloads, %d disconnects, %d relistens; slots given up %d, emptied %d, restored by reload %d; client %v",
		a.sequences, a.kills, a.crashes, a.reloads, a.disconnects, a.relistens, a.givenUp, a.emptied, a.restores, clientStats{counts: a.outcomes})
}
