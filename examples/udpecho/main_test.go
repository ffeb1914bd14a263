//go:build linux

package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sockshare/sockshare/reuse"
)

// binPath is the udpecho binary, built once by TestMain.
var binPath string

// tagEnv marks every process a test starts (the master and, through the
// inherited environment, its workers), so that the test can look for
// leftovers in /proc.
const tagEnv = "UDPECHO_TEST_TAG"

// Bounds on every blocking step, generous for a loaded 2-core machine.
const (
	startTimeout = 30 * time.Second
	exitTimeout  = 30 * time.Second
	answerWait   = time.Second // per attempt, before a datagram counts as lost
	tries        = 5           // attempts per datagram
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "udpecho-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "udpecho")
	out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// output collects what a process writes and wakes a waiter on each write.
type output struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	notify chan struct{}
}

func newOutput() *output { return &output{notify: make(chan struct{}, 1)} }

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	o.buf.Write(p)
	o.mu.Unlock()
	select {
	case o.notify <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// server is one udpecho master process.
type server struct {
	t              *testing.T
	cmd            *exec.Cmd
	tag            string
	stdout, stderr *output
	done           chan struct{} // closed when the process was waited for
	code           int

	addr    *net.UDPAddr // from the ready line
	policy  string
	workers int
}

var readyLine = regexp.MustCompile(`^listening on (\S+) policy=(\S+) workers=(\d+)\n$`)

// launch starts udpecho with args; it does not wait for the ready line.
func launch(t *testing.T, args ...string) *server {
	t.Helper()
	s := &server{
		t:      t,
		tag:    fmt.Sprintf("%s/%d", t.Name(), time.Now().UnixNano()),
		stdout: newOutput(),
		stderr: newOutput(),
		done:   make(chan struct{}),
	}
	s.cmd = exec.Command(binPath, args...)
	env := []string{tagEnv + "=" + s.tag}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SOCKSHARE_") {
			env = append(env, kv)
		}
	}
	s.cmd.Env = env
	s.cmd.Stdout, s.cmd.Stderr = s.stdout, s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s.cmd.Wait()
		s.code = s.cmd.ProcessState.ExitCode()
		close(s.done)
	}()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			s.cmd.Process.Kill()
			<-s.done
		}
	})
	return s
}

// start starts udpecho with args and waits for its ready line.
func start(t *testing.T, args ...string) *server {
	t.Helper()
	s := launch(t, args...)
	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	for {
		out := s.stdout.String()
		if strings.HasSuffix(out, "\n") {
			m := readyLine.FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("stdout %q is not one ready line; stderr:\n%s", out, s.stderr)
			}
			addr, err := net.ResolveUDPAddr("udp", m[1])
			if err != nil {
				t.Fatalf("ready line address: %v", err)
			}
			s.addr, s.policy = addr, m[2]
			s.workers, _ = strconv.Atoi(m[3])
			return s
		}
		select {
		case <-s.stdout.notify:
		case <-s.done:
			t.Fatalf("udpecho %q exited with %d before its ready line; stderr:\n%s", args, s.code, s.stderr)
		case <-deadline.C:
			t.Fatalf("no ready line within %v; stdout %q, stderr:\n%s", startTimeout, out, s.stderr)
		}
	}
}

// wait waits for the process to exit and returns its status.
func (s *server) wait() int {
	s.t.Helper()
	select {
	case <-s.done:
		return s.code
	case <-time.After(exitTimeout):
		s.t.Fatalf("udpecho did not exit within %v; stderr:\n%s", exitTimeout, s.stderr)
		return -1
	}
}

// stop sends SIGTERM and checks a clean exit: status 0 and no process
// left behind.
func (s *server) stop() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.t.Fatal(err)
	}
	if code := s.wait(); code != 0 {
		s.t.Errorf("exit status after SIGTERM: %d, want 0; stderr:\n%s", code, s.stderr)
	}
	s.checkNoLeftovers()
}

// checkNoLeftovers fails if a process carrying this server's tag still
// exists. The master reaps its workers before it exits, so a scan right
// after its exit is enough.
func (s *server) checkNoLeftovers() {
	s.t.Helper()
	if pids := s.tagged(); len(pids) > 0 {
		s.t.Errorf("processes %v are still running after udpecho exited", pids)
	}
}

// tagged lists the processes carrying this server's tag: the master and
// its workers.
func (s *server) tagged() []string {
	want := []byte(tagEnv + "=" + s.tag + "\x00")
	files, _ := filepath.Glob("/proc/[0-9]*/environ")
	var pids []string
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, want) {
			pids = append(pids, filepath.Base(filepath.Dir(p)))
		}
	}
	return pids
}

// dial opens a client socket, one flow, to the server.
func (s *server) dial() *net.UDPConn {
	s.t.Helper()
	c, err := net.DialUDP("udp", nil, s.addr)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { c.Close() })
	return c
}

// flow is one client socket and the bookkeeping of its datagrams: how
// often each payload was sent and which workers answered it.
type flow struct {
	c       *net.UDPConn
	workers int // answers must name a worker id in 1..workers
	sent    map[string]int
	answers map[string][]int
	errs    []error
}

func newFlow(c *net.UDPConn, workers int) *flow {
	return &flow{c: c, workers: workers, sent: map[string]int{}, answers: map[string][]int{}}
}

// exchange sends the payloads and reads answers until each has one. A
// payload still unanswered after answerWait is sent again, up to tries
// times in all; it then stays unanswered. Answers to payloads of earlier
// calls that arrive late are recorded too.
func (f *flow) exchange(payloads ...string) {
	pending := map[string]bool{}
	for _, p := range payloads {
		pending[p] = true
	}
	buf := make([]byte, 2048)
	for try := 0; try < tries && len(pending) > 0; try++ {
		for p := range pending {
			f.sent[p]++
			if _, err := f.c.Write([]byte(p)); err != nil {
				f.errs = append(f.errs, fmt.Errorf("send %q: %w", p, err))
				return
			}
		}
		f.c.SetReadDeadline(time.Now().Add(answerWait))
		for len(pending) > 0 {
			n, err := f.c.Read(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break // lost: send what is pending again
			}
			if err != nil {
				f.errs = append(f.errs, fmt.Errorf("read: %w", err))
				return
			}
			p, ok := f.record(string(buf[:n]))
			if ok {
				delete(pending, p)
			}
		}
	}
}

// record checks one answer, "<worker id> <payload>", and files it.
func (f *flow) record(answer string) (payload string, ok bool) {
	idStr, payload, found := strings.Cut(answer, " ")
	id, err := strconv.Atoi(idStr)
	if !found || err != nil || id < 1 || id > f.workers {
		f.errs = append(f.errs, fmt.Errorf("answer %q does not start with a worker id in 1..%d", answer, f.workers))
		return "", false
	}
	if f.sent[payload] == 0 {
		f.errs = append(f.errs, fmt.Errorf("answer %q echoes a payload never sent", answer))
		return "", false
	}
	f.answers[payload] = append(f.answers[payload], id)
	return payload, true
}

// drain reads late answers for a short while, so that a duplicate of the
// last payloads is seen too.
func (f *flow) drain(d time.Duration) {
	buf := make([]byte, 2048)
	f.c.SetReadDeadline(time.Now().Add(d))
	for {
		n, err := f.c.Read(buf)
		if err != nil {
			return
		}
		f.record(string(buf[:n]))
	}
}

// check reports errors, unanswered payloads and payloads answered more
// often than they were sent.
func (f *flow) check(t *testing.T, name string) {
	t.Helper()
	for _, err := range f.errs {
		t.Errorf("%s: %v", name, err)
	}
	for p, n := range f.sent {
		a := len(f.answers[p])
		if a == 0 {
			t.Errorf("%s: %q sent %d times, never answered", name, p, n)
		}
		if a > n {
			t.Errorf("%s: %q sent %d times, answered %d times by %v", name, p, n, a, f.answers[p])
		}
	}
}

// workerIDs is the set of workers that answered this flow.
func (f *flow) workerIDs() map[int]bool {
	ids := map[int]bool{}
	for _, as := range f.answers {
		for _, id := range as {
			ids[id] = true
		}
	}
	return ids
}

// manyFlows runs n client sockets concurrently, each exchanging perFlow
// datagrams one at a time, and returns them once all are done.
func manyFlows(s *server, n, perFlow int) []*flow {
	flows := make([]*flow, n)
	for i := range flows {
		flows[i] = newFlow(s.dial(), s.workers)
	}
	var wg sync.WaitGroup
	for i, f := range flows {
		wg.Go(func() {
			for k := range perFlow {
				f.exchange(fmt.Sprintf("flow %d datagram %d", i, k))
			}
			f.drain(100 * time.Millisecond)
		})
	}
	wg.Wait()
	for i, f := range flows {
		f.check(s.t, fmt.Sprintf("flow %d", i))
	}
	return flows
}

func TestSharedAnswersEverySocket(t *testing.T) {
	s := start(t, "-workers", "2", "-policy", "shared", "-addr", "127.0.0.1:0")
	if s.policy != "shared" || s.workers != 2 {
		t.Errorf("ready line says policy=%s workers=%d, want shared and 2", s.policy, s.workers)
	}
	flows := manyFlows(s, 64, 3)
	perWorker := map[int]int{}
	for _, f := range flows {
		for _, as := range f.answers {
			for _, id := range as {
				perWorker[id]++
			}
		}
	}
	t.Logf("answers per worker: %v", perWorker)
	s.stop()
	if e := s.stderr.String(); e != "" {
		t.Errorf("stderr is not empty:\n%s", e)
	}
}

func TestReusePortKeepsFlowsOnOneWorker(t *testing.T) {
	s := start(t, "-workers", "2", "-policy", "reuseport", "-addr", "127.0.0.1:0")
	if s.policy != "reuseport" {
		t.Errorf("ready line says policy=%s, want reuseport", s.policy)
	}
	flows := manyFlows(s, 64, 4)
	flowsPerWorker := map[int]int{}
	for i, f := range flows {
		ids := f.workerIDs()
		if len(ids) != 1 {
			t.Errorf("flow %d was answered by workers %v, want one", i, ids)
		}
		for id := range ids {
			flowsPerWorker[id]++
		}
	}
	t.Logf("flows per worker: %v", flowsPerWorker)
	if len(flowsPerWorker) != 2 {
		t.Errorf("64 flows reached workers %v, want both", flowsPerWorker)
	}
	s.stop()
}

func TestSteeringSpreadsOneFlow(t *testing.T) {
	if caps := reuse.Probe(); !caps.CBPFSteering {
		t.Skipf("no cBPF steering here: %s", caps.Note)
	}
	s := start(t, "-workers", "2", "-policy", "reuseport", "-steer", "-addr", "127.0.0.1:0")
	const total, batch = 1000, 20
	f := newFlow(s.dial(), s.workers)
	for b := 0; b < total; b += batch {
		ps := make([]string, batch)
		for i := range ps {
			ps[i] = fmt.Sprintf("datagram %d", b+i)
		}
		f.exchange(ps...)
	}
	f.drain(100 * time.Millisecond)
	f.check(t, "the flow")
	perWorker := map[int]int{}
	answered := 0
	for _, as := range f.answers {
		for _, id := range as {
			perWorker[id]++
			answered++
		}
	}
	t.Logf("%d datagrams, answers per worker: %v", total, perWorker)
	if len(perWorker) != 2 {
		t.Errorf("one steered flow reached workers %v, want both", perWorker)
	}
	for id, n := range perWorker {
		if n*100 > answered*60 {
			t.Errorf("worker %d answered %d of %d datagrams, more than 60%%", id, n, answered)
		}
	}
	s.stop()
}

func TestRRFallsBackToSharedAndSaysSoOnce(t *testing.T) {
	s := start(t, "-workers", "2", "-policy", "rr", "-addr", "127.0.0.1:0")
	if s.policy != "shared" {
		t.Errorf("ready line says policy=%s, want shared (the fallback)", s.policy)
	}
	manyFlows(s, 16, 2)
	s.stop()
	stderr := s.stderr.String()
	if n := strings.Count(stderr, "does not apply to datagram sockets"); n != 1 {
		t.Errorf("the fallback was logged %d times, want once; stderr:\n%s", n, stderr)
	}
	if n := strings.Count(stderr, "\n"); n != 1 {
		t.Errorf("stderr has %d lines, want the one fallback line:\n%s", n, stderr)
	}
}

func TestSIGTERMExitsZero(t *testing.T) {
	s := start(t, "-workers", "2", "-addr", "127.0.0.1:0", "-policy", "reuseport")
	f := newFlow(s.dial(), s.workers)
	f.exchange("before SIGTERM")
	f.check(t, "the flow")
	if pids := s.tagged(); len(pids) != 3 {
		t.Errorf("running processes %v, want the master and 2 workers", pids)
	}
	s.stop() // asserts status 0 and that the workers are gone
	if e := s.stderr.String(); e != "" {
		t.Errorf("stderr is not empty:\n%s", e)
	}
}

// SIGHUP replaces every worker while flows keep sending: every datagram
// is answered (a retry is allowed), and under reuseport each flow moves to
// the replacement of its old worker, since the replacement gets the same
// slot socket.
func TestSIGHUPKeepsFlowsInTheirSlots(t *testing.T) {
	s := start(t, "-workers", "2", "-policy", "reuseport", "-addr", "127.0.0.1:0")
	const nflows = 32
	flows := make([]*flow, nflows)
	for i := range flows {
		// Ids 3 and 4 are the replacements.
		flows[i] = newFlow(s.dial(), 4)
	}
	payload := func(i, round int) string { return fmt.Sprintf("flow %d round %d", i, round) }
	round := 0
	exchangeAll := func() {
		var wg sync.WaitGroup
		for i, f := range flows {
			wg.Go(func() { f.exchange(payload(i, round)) })
		}
		wg.Wait()
		round++
	}
	// lastAnswer is the worker that answered flow i last in the round
	// just done, 0 if none did.
	lastAnswer := func(i int) int {
		as := flows[i].answers[payload(i, round-1)]
		if len(as) == 0 {
			return 0
		}
		return as[len(as)-1]
	}
	exchangeAll()
	before := make([]int, nflows)
	for i := range flows {
		before[i] = lastAnswer(i)
	}
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// Keep the flows busy through the reload, until it is done (an old
	// worker still reads its slot's socket beside the replacement until it
	// exits) and every flow is answered by a replacement, then one more
	// round.
	deadline := time.Now().Add(30 * time.Second)
	for {
		exchangeAll()
		if !strings.Contains(s.stdout.String(), "reload: done") {
			if time.Now().After(deadline) {
				t.Fatalf("no reload line 30s after SIGHUP; stdout %q, stderr:\n%s", s.stdout, s.stderr)
			}
			continue
		}
		done := true
		for i := range flows {
			if lastAnswer(i) <= 2 {
				done = false
			}
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("flows still answered by the old workers 30s after SIGHUP; stderr:\n%s", s.stderr)
		}
	}
	exchangeAll()
	replacedBy := map[int]int{}
	for i, f := range flows {
		f.check(t, fmt.Sprintf("flow %d", i))
		after := lastAnswer(i)
		if after != 3 && after != 4 {
			t.Errorf("flow %d answered by worker %d after the reload, want a replacement (3 or 4)", i, after)
			continue
		}
		if prev, ok := replacedBy[before[i]]; ok && prev != after {
			t.Errorf("flows of worker %d moved to both %d and %d: flows left their slot", before[i], prev, after)
		}
		replacedBy[before[i]] = after
	}
	t.Logf("%d rounds; worker replaced by: %v", round, replacedBy)
	if len(replacedBy) != 2 || replacedBy[1] == replacedBy[2] {
		t.Errorf("old to new workers %v, want each old worker's flows on one distinct replacement", replacedBy)
	}
	s.stop()
	if e := s.stderr.String(); e != "" {
		t.Errorf("stderr is not empty:\n%s", e)
	}
}

// The master holds the sockets but never reads them: datagrams must not wake
// it. A socket left in the master's netpoller costs one wake-up per
// datagram that arrives, so 1000 datagrams sent one at a time would show
// as about 1000 context switches of the master's threads.
func TestMasterSleepsThroughTraffic(t *testing.T) {
	for _, pol := range []string{"shared", "reuseport"} {
		t.Run(pol, func(t *testing.T) {
			s := start(t, "-workers", "2", "-policy", pol, "-addr", "127.0.0.1:0")
			flows := []*flow{newFlow(s.dial(), s.workers), newFlow(s.dial(), s.workers)}
			before := contextSwitches(t, s.cmd.Process.Pid)
			var wg sync.WaitGroup
			for i, f := range flows {
				wg.Go(func() {
					for k := range 500 {
						f.exchange(fmt.Sprintf("flow %d datagram %d", i, k))
					}
				})
			}
			wg.Wait()
			woken := contextSwitches(t, s.cmd.Process.Pid) - before
			for i, f := range flows {
				f.check(t, fmt.Sprintf("flow %d", i))
			}
			t.Logf("the master's threads were switched %d times during 1000 exchanges", woken)
			if woken > 250 {
				t.Errorf("the master was woken %d times during 1000 exchanges it takes no part in, want at most 250", woken)
			}
			s.stop()
		})
	}
}

// contextSwitches sums the context switches of every thread of pid.
func contextSwitches(t *testing.T, pid int) int {
	t.Helper()
	files, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(files) == 0 {
		t.Fatalf("no threads of %d in /proc: %v", pid, err)
	}
	n := 0
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // the thread exited
		}
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(k, "voluntary_ctxt_switches") {
				x, _ := strconv.Atoi(strings.TrimSpace(v))
				n += x
			}
		}
	}
	return n
}

func TestBadInputExitsTwo(t *testing.T) {
	// A plain socket holds a port, so that the master's bind fails.
	busy, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	inUse := busy.LocalAddr().String()

	cases := []struct {
		name string
		args []string
		want string // in the stderr line
	}{
		{"unknown policy", []string{"-policy", "bogus"}, "unknown policy"},
		{"bad port", []string{"-addr", "127.0.0.1:99999"}, "bad -addr"},
		{"no host:port", []string{"-addr", "nonsense"}, "bad -addr"},
		{"zero workers", []string{"-workers", "0"}, "-workers"},
		{"unknown flag", []string{"-bogus"}, "bogus"},
		{"steer without reuseport", []string{"-policy", "shared", "-steer"}, "-steer"},
		{"port in use, shared", []string{"-workers", "2", "-policy", "shared", "-addr", inUse}, "address already in use"},
		{"port in use, reuseport", []string{"-workers", "2", "-policy", "reuseport", "-addr", inUse}, "address already in use"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := launch(t, tc.args...)
			if code := s.wait(); code != 2 {
				t.Errorf("exit status %d, want 2", code)
			}
			stderr := s.stderr.String()
			if strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "udpecho: ") || !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr is not one %q line about %q:\n%s", "udpecho: ", tc.want, stderr)
			}
			if out := s.stdout.String(); out != "" {
				t.Errorf("stdout is not empty: %q", out)
			}
			s.checkNoLeftovers()
		})
	}
}
