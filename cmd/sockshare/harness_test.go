//go:build linux

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sockshare/sockshare/internal/kdispatch"
)

// Bounds of the waits. The runner is this test binary, race-instrumented
// under -race, on a machine shared with other test runs.
const (
	startTimeout = 30 * time.Second // until the listening line
	exitTimeout  = 30 * time.Second // from a stop signal to the runner's exit
	goneTimeout  = 10 * time.Second // from the runner's exit until its processes are gone
)

// The foreign workers in testdata, by the flags they need.
var (
	pythonWorker = []string{"python3", "testdata/worker.py"}
	nodeWorker   = []string{"node", "testdata/worker.js"}
)

// needCommand skips the test when the program of a worker command is not
// installed.
func needCommand(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s not installed: %v", name, err)
	}
}

// needKernelDispatch skips the test when the kernel cannot dispatch (no
// BPF, or not enough privilege).
func needKernelDispatch(t *testing.T) {
	t.Helper()
	if err := kdispatch.Probe(); err != nil {
		t.Skipf("kernel dispatch unavailable: %v", err)
	}
}

var runSeq atomic.Int64

// runnerProc is one "sockshare run" process: this test binary with
// envAsRunner set.
type runnerProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	token  string // envRunToken's value, unique to this runner
	stdout *lineLog
	stderr *lineLog
	exited chan struct{} // closed once the process has been waited for
	state  *os.ProcessState
}

// runOpts are the less common ways to start a runner.
type runOpts struct {
	env    []string   // added to the runner's environment
	extra  []*os.File // ExtraFiles: fd 3, 4, ...
	wrap   []string   // argv that execs the runner, before the test binary (sh -c ...)
	stdout *os.File   // the runner's stdout instead of a pipe read into r.stdout
}

// startRunner starts "sockshare run args..." and stops it, if the test has
// not, when the test ends, checking that none of its processes remain.
func startRunner(t *testing.T, args ...string) *runnerProc {
	t.Helper()
	return startRunnerWith(t, runOpts{}, args...)
}

func startRunnerWith(t *testing.T, o runOpts, args ...string) *runnerProc {
	t.Helper()
	argv := append(append(append([]string{}, o.wrap...), os.Args[0], "run"), args...)
	r := &runnerProc{
		t:      t,
		token:  fmt.Sprintf("%d-%d", os.Getpid(), runSeq.Add(1)),
		stdout: newLineLog(),
		stderr: newLineLog(),
		exited: make(chan struct{}),
	}
	r.cmd = exec.Command(argv[0], argv[1:]...)
	r.cmd.Env = append(runnerEnv(), envAsRunner+"=1", envRunToken+"="+r.token)
	r.cmd.Env = append(r.cmd.Env, o.env...)
	r.cmd.ExtraFiles = o.extra

	// Plain pipes rather than exec's copying goroutines: Wait then returns
	// when the runner exits, even if a worker it left behind still holds
	// the write ends.
	var toClose []*os.File
	var outR *os.File
	if o.stdout != nil {
		r.cmd.Stdout = o.stdout
	} else {
		var outW *os.File
		outR, outW = pipe(t)
		r.cmd.Stdout = outW
		toClose = append(toClose, outW)
	}
	errR, errW := pipe(t)
	r.cmd.Stderr = errW
	toClose = append(toClose, errW)
	err := r.cmd.Start()
	for _, f := range toClose {
		f.Close()
	}
	if err != nil {
		errR.Close()
		if outR != nil {
			outR.Close()
		}
		t.Fatalf("start runner: %v", err)
	}
	if outR != nil {
		go r.stdout.read(outR)
	} else {
		r.stdout.close()
	}
	go r.stderr.read(errR)
	go func() {
		r.cmd.Wait()
		r.state = r.cmd.ProcessState
		close(r.exited)
	}()
	t.Cleanup(r.cleanup)
	return r
}

func pipe(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	rd, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	return rd, wr
}

// runnerEnv is the test's environment without what would change the
// runner's choices behind the flags: the default policy and dispatch, and
// a service manager's variables.
func runnerEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "SOCKSHARE_POLICY", "SOCKSHARE_DISPATCH", "NOTIFY_SOCKET",
			"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES",
			envAsRunner, envRole, envAddr, envRunToken:
			continue
		}
		out = append(out, kv)
	}
	return out
}

func (r *runnerProc) pid() int { return r.cmd.Process.Pid }

// status says how the runner exited, or that it runs.
func (r *runnerProc) status() string {
	select {
	case <-r.exited:
		return r.state.String()
	default:
		return "running"
	}
}

// signal sends sig to the runner, which must still run.
func (r *runnerProc) signal(sig syscall.Signal) {
	r.t.Helper()
	select {
	case <-r.exited:
		r.t.Fatalf("runner exited (%v) before %v could be sent\n%s", r.state, sig, r.output())
	default:
	}
	if err := r.cmd.Process.Signal(sig); err != nil {
		r.t.Fatalf("signal runner %v: %v", sig, err)
	}
}

// wait waits for the runner to exit and returns its exit status, after
// its stderr has been read to the end (or for at most goneTimeout more).
func (r *runnerProc) wait(timeout time.Duration) int {
	r.t.Helper()
	select {
	case <-r.exited:
	case <-time.After(timeout):
		r.t.Fatalf("runner still running after %v\n%s", timeout, r.output())
	}
	r.stderr.waitEOF(goneTimeout)
	r.stdout.waitEOF(goneTimeout)
	return r.state.ExitCode()
}

// stop sends SIGTERM and checks the runner exits 0 and leaves no process.
func (r *runnerProc) stop() {
	r.t.Helper()
	r.signal(syscall.SIGTERM)
	if code := r.wait(exitTimeout); code != 0 {
		r.t.Errorf("after SIGTERM the runner exited with %v, want status 0\n%s", r.state, r.output())
	}
	r.checkNoneLeft()
}

// cleanup stops a runner the test left running and makes sure none of its
// processes outlive the test.
func (r *runnerProc) cleanup() {
	select {
	case <-r.exited:
	default:
		r.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.exited:
		case <-time.After(exitTimeout):
			r.t.Errorf("runner ignored SIGTERM for %v; killing it", exitTimeout)
			r.cmd.Process.Kill()
			<-r.exited
		}
	}
	r.checkNoneLeft()
	r.stderr.waitEOF(goneTimeout)
	if out := r.stderr.String(); strings.Contains(out, "DATA RACE") {
		r.t.Errorf("the runner reported a data race:\n%s", out)
	}
	if r.t.Failed() {
		r.t.Logf("runner %s:\n%s", strings.Join(r.cmd.Args[1:], " "), r.output())
	}
}

// checkNoneLeft waits until no process carries the runner's token (the
// runner has exited) and fails the test, killing them, if some remain.
func (r *runnerProc) checkNoneLeft() {
	r.t.Helper()
	deadline := time.Now().Add(goneTimeout)
	for {
		left := processesWith(envRunToken + "=" + r.token)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			r.t.Errorf("%v after the runner exited, its processes remain: %v", goneTimeout, left)
			for _, p := range left {
				syscall.Kill(p.pid, syscall.SIGKILL)
			}
			return
		}
		time.Sleep(20 * time.Millisecond) // no event tells that another process is gone
	}
}

func (r *runnerProc) output() string {
	return "stdout:\n" + r.stdout.String() + "stderr:\n" + r.stderr.String()
}

// exitLine returns the runner's one line of explanation (it starts with
// "sockshare: "; log records start with "time=") and fails the test unless
// there is exactly one.
func (r *runnerProc) exitLine() string {
	r.t.Helper()
	var found []string
	for _, l := range r.stderr.lines() {
		if strings.HasPrefix(l, "sockshare: ") {
			found = append(found, l)
		}
	}
	if len(found) != 1 {
		r.t.Fatalf("want one line starting with \"sockshare: \" on stderr, got %d\n%s", len(found), r.output())
	}
	return found[0]
}

var listeningRE = regexp.MustCompile(`^listening on (\S+) policy=(\S+) workers=(\d+)$`)

// listening waits for the line the runner prints once every worker is
// ready and returns the first address as host:port, checking the policy
// and the number of workers it names.
func (r *runnerProc) listening(policy string, workers int) string {
	r.t.Helper()
	hostport, _, _ := strings.Cut(strings.TrimPrefix(r.listeningURL(policy, workers), "tcp://"), "#")
	return hostport
}

// listeningURL is listening returning the first listen URL as printed.
func (r *runnerProc) listeningURL(policy string, workers int) string {
	r.t.Helper()
	m := r.waitLine(r.stdout, listeningRE, startTimeout)
	if m[2] != policy || m[3] != strconv.Itoa(workers) {
		r.t.Errorf("%q: want policy=%s workers=%d", m[0], policy, workers)
	}
	first, _, _ := strings.Cut(m[1], ",")
	return first
}

var metricsRE = regexp.MustCompile(`msg=metrics url=(http://\S+/metrics)`)

// metricsURL is the /metrics URL the runner logs.
func (r *runnerProc) metricsURL() string {
	r.t.Helper()
	return r.waitLine(r.stderr, metricsRE, startTimeout)[1]
}

// waitLine waits until a line of l matches re and returns the submatches.
// It fails the test when the runner exits and its output ends without one,
// or after timeout.
func (r *runnerProc) waitLine(l *lineLog, re *regexp.Regexp, timeout time.Duration) []string {
	r.t.Helper()
	if m := r.findLine(l, re, timeout); m != nil {
		return m
	}
	r.t.Fatalf("no line matching %q: the output ended, or %v passed (runner: %s)\n%s", re, timeout, r.status(), r.output())
	return nil
}

// findLine is waitLine returning nil instead of failing.
func (r *runnerProc) findLine(l *lineLog, re *regexp.Regexp, timeout time.Duration) []string {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	exited := r.exited
	for i := 0; ; {
		lines, eof, more := l.snapshot()
		for ; i < len(lines); i++ {
			if m := re.FindStringSubmatch(lines[i]); m != nil {
				return m
			}
		}
		if eof {
			return nil
		}
		select {
		case <-more:
		case <-exited:
			// What it wrote before it exited may still be in the pipe;
			// its workers, if left behind, may hold the pipe open.
			exited = nil
			deadline.Reset(goneTimeout)
		case <-deadline.C:
			return nil
		}
	}
}

// lineLog collects the lines of an output stream and wakes those waiting
// for the next one.
type lineLog struct {
	mu   sync.Mutex
	all  []string
	eof  bool
	more chan struct{} // closed by the next line or the end
}

func newLineLog() *lineLog { return &lineLog{more: make(chan struct{})} }

func (l *lineLog) read(rd io.ReadCloser) {
	defer rd.Close()
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		l.mu.Lock()
		l.all = append(l.all, sc.Text())
		close(l.more)
		l.more = make(chan struct{})
		l.mu.Unlock()
	}
	l.close()
}

func (l *lineLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.eof {
		l.eof = true
		close(l.more)
	}
}

func (l *lineLog) snapshot() (lines []string, eof bool, more <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.all[:len(l.all):len(l.all)], l.eof, l.more
}

func (l *lineLog) lines() []string {
	lines, _, _ := l.snapshot()
	return lines
}

func (l *lineLog) String() string {
	var b strings.Builder
	for _, s := range l.lines() {
		b.WriteString("  " + s + "\n")
	}
	return b.String()
}

// waitEOF waits until the stream has ended, at most timeout.
func (l *lineLog) waitEOF(timeout time.Duration) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		_, eof, more := l.snapshot()
		if eof {
			return
		}
		select {
		case <-more:
		case <-deadline.C:
			return
		}
	}
}

// proc is a process found in /proc.
type proc struct {
	pid     int
	cmdline string
}

func (p proc) String() string { return fmt.Sprintf("%d (%s)", p.pid, p.cmdline) }

// processesWith lists the live processes whose initial environment holds
// the entry kv. A zombie's environment reads empty: it is not listed.
func processesWith(kv string) []proc {
	ents, _ := os.ReadDir("/proc")
	needle := []byte("\x00" + kv + "\x00")
	var out []proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !bytes.Contains(append([]byte{0}, env...), needle) {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		out = append(out, proc{pid, strings.TrimSpace(string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '})))})
	}
	return out
}

// answer is what a worker said to one request.
type answer struct {
	worker, slot, pid int
	listenPID         string
	err               error
}

var bodyRE = regexp.MustCompile(`^worker=(\d+) slot=(\d+) pid=(\d+) listen_pid=(\S*)\n$`)

// get makes one request on a new connection.
func get(addr, path string) answer { return getFrom(nil, addr, path) }

// getFrom is get from the source address src (nil: any), with a raw
// HTTP/1.1 client so every error is the socket's own.
func getFrom(src net.IP, addr, path string) answer {
	d := net.Dialer{Timeout: 5 * time.Second}
	if src != nil {
		d.LocalAddr = &net.TCPAddr{IP: src}
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return answer{err: err}
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path); err != nil {
		return answer{err: err}
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{err: err}
	}
	if resp.StatusCode != http.StatusOK {
		return answer{err: fmt.Errorf("status %d: %q", resp.StatusCode, body)}
	}
	m := bodyRE.FindStringSubmatch(string(body))
	if m == nil {
		return answer{err: fmt.Errorf("unexpected body %q", body)}
	}
	a := answer{listenPID: m[4]}
	a.worker, _ = strconv.Atoi(m[1])
	a.slot, _ = strconv.Atoi(m[2])
	a.pid, _ = strconv.Atoi(m[3])
	return a
}

// requests makes n requests, c at a time, each on its own connection.
func requests(addr string, n, c int) []answer {
	out := make([]answer, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				out[i] = get(addr, "/")
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

// byWorker counts the answers per worker id and returns the failures.
func byWorker(as []answer) (per map[int]int, errs []error) {
	per = map[int]int{}
	for _, a := range as {
		if a.err != nil {
			errs = append(errs, a.err)
			continue
		}
		per[a.worker]++
	}
	return per, errs
}

// scrape fetches url (the runner's /metrics) and parses it with the
// Prometheus text parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v\n%s", url, resp.StatusCode, err, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse %s: %v\n%s", url, err, body)
	}
	return mfs
}

// value is the value of the series of family name with the given labels
// (name=value pairs), and whether there is one.
func value(mfs map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	mf := mfs[name]
	if mf == nil {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

// eventually polls cond until it holds, failing the test after timeout
// with cond's last description. For states no event announces (a count
// in the metrics).
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last: %s", timeout, what, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freePort returns a port that was free on 127.0.0.1 a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// literal matches s as it is.
func literal(s string) *regexp.Regexp { return regexp.MustCompile(regexp.QuoteMeta(s)) }
