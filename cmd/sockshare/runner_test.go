//go:build linux

package main

import (
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// workerKind is a foreign worker program and the -ready it needs.
type workerKind struct {
	name  string
	cmd   []string
	ready []string
}

var (
	// worker.py sends READY=1 to $NOTIFY_SOCKET: the default -ready notify.
	pythonKind = workerKind{"python", pythonWorker, nil}
	// worker.js has no sd_notify.
	nodeStarted = workerKind{"node", nodeWorker, []string{"-ready", "started"}}
	nodeDelayed = workerKind{"node", nodeWorker, []string{"-ready", "delay:300ms"}}
)

// variant is a -policy and -dispatch.
type variant struct{ policy, dispatch string }

func (v variant) String() string {
	if v.dispatch == "" {
		return v.policy
	}
	return v.policy + "-" + v.dispatch
}

func (v variant) flags() []string {
	f := []string{"-policy", v.policy}
	if v.dispatch != "" {
		f = append(f, "-dispatch", v.dispatch)
	}
	return f
}

func (v variant) need(t *testing.T) {
	t.Helper()
	if v.dispatch == "kernel" {
		needKernelDispatch(t)
	}
}

// Every way a foreign program can be the workers.
var foreignVariants = []variant{
	{"shared", ""}, {"reuseport", ""}, {"rr", "kernel"}, {"sticky", "kernel"},
}

// runArgs is a run command line: two workers on a port of 127.0.0.1 the
// kernel picks, v's policy, w's readiness, extra flags, then w's command.
func runArgs(v variant, w workerKind, extra ...string) []string {
	args := []string{"-workers", "2", "-listen", "tcp://127.0.0.1:0"}
	args = append(args, v.flags()...)
	args = append(args, w.ready...)
	args = append(args, extra...)
	return append(append(args, "--"), w.cmd...)
}

// Python and Node programs that know nothing of sockshare serve as the
// workers under every policy a foreign program can have: both workers
// answer, each got LISTEN_PID equal to its own pid (the exec shim kept the
// pid), each is the runner's child, and SIGTERM ends it all with status 0.
func TestForeignWorkersServe(t *testing.T) {
	for _, w := range []workerKind{pythonKind, nodeStarted} {
		for _, v := range foreignVariants {
			t.Run(w.name+"/"+v.String(), func(t *testing.T) {
				t.Parallel()
				needCommand(t, w.cmd[0])
				v.need(t)
				r := startRunner(t, runArgs(v, w)...)
				addr := r.listening(v.policy, 2)

				var as []answer
				if v.policy == "sticky" {
					as = stickyRequests(t, addr)
				} else {
					as = untilBoth(addr)
				}
				per, errs := byWorker(as)
				if len(errs) > 0 {
					t.Fatalf("%d of %d requests failed, first: %v", len(errs), len(as), errs[0])
				}
				if len(per) != 2 {
					t.Errorf("answers per worker id %v; want both workers", per)
				}
				pids := map[int]bool{}
				for _, a := range as {
					if a.listenPID != strconv.Itoa(a.pid) {
						t.Errorf("worker %d: LISTEN_PID=%q, its pid is %d", a.worker, a.listenPID, a.pid)
					}
					pids[a.pid] = true
				}
				for pid := range pids {
					if ppid, _ := procParent(pid); ppid != r.pid() {
						t.Errorf("worker pid %d has parent %d, want the runner %d", pid, ppid, r.pid())
					}
				}
				// What checks that none is left after the stop sees them.
				marked := map[int]bool{}
				for _, p := range processesWith(envRunToken + "=" + r.token) {
					marked[p.pid] = true
				}
				for pid := range pids {
					if !marked[pid] {
						t.Errorf("worker pid %d does not carry the runner's %s", pid, envRunToken)
					}
				}
				r.stop()
			})
		}
	}
}

// stickyRequests makes 3 rounds of one request from each of 32 source
// addresses, the first round as soon as the runner says it listens, and
// checks that each address kept its worker throughout.
func stickyRequests(t *testing.T, addr string) []answer {
	t.Helper()
	var all []answer
	var moved []string
	first := map[int]int{}
	for round := range 3 {
		for i := range 32 {
			src := net.IPv4(127, 0, 0, byte(10+i))
			a := getFrom(src, addr, "/")
			all = append(all, a)
			if a.err != nil {
				continue
			}
			if w, ok := first[i]; !ok {
				first[i] = a.worker
			} else if a.worker != w {
				moved = append(moved, fmt.Sprintf("%v: worker %d, in round %d worker %d", src, w, round, a.worker))
				first[i] = a.worker
			}
		}
	}
	if len(moved) > 0 {
		t.Errorf("sticky: %d times a client changed worker:\n  %s", len(moved), strings.Join(moved, "\n  "))
	}
	return all
}

// untilBoth makes requests, 4 at a time, until 60 are answered and both
// workers have answered, or 600 have been made. Under shared the kernel
// wakes whichever worker it likes, and under -ready started a worker
// counts as ready before it accepts: the other may take the first ones.
func untilBoth(addr string) []answer {
	var all []answer
	for len(all) < 600 {
		all = append(all, requests(addr, 20, 4)...)
		if per, _ := byWorker(all); len(all) >= 60 && len(per) >= 2 {
			break
		}
	}
	return all
}

// SIGHUP under load: the rolling reload replaces both workers while four
// clients keep making requests, and not one request fails.
func TestReloadUnderLoad(t *testing.T) {
	for _, w := range []workerKind{pythonKind, nodeDelayed} {
		for _, v := range foreignVariants[:3] {
			t.Run(w.name+"/"+v.String(), func(t *testing.T) {
				t.Parallel()
				needCommand(t, w.cmd[0])
				v.need(t)
				r := startRunner(t, runArgs(v, w)...)
				addr := r.listening(v.policy, 2)
				testReloadUnderLoad(t, r, addr)
				r.stop()
			})
		}
	}
}

// Phases of a reload, as a request saw them when it started.
const (
	beforeHUP = iota
	duringReload
	afterReload
)

var reloadRE = regexp.MustCompile(`msg="reload (done|failed)"`)

func testReloadUnderLoad(t *testing.T, r *runnerProc, addr string) {
	t.Helper()
	l := startLoad(addr, 4)
	defer l.finish()
	l.waitFor(t, "40 answers before SIGHUP", func(n [3]int, _ map[int]bool) bool { return n[beforeHUP] >= 40 })

	l.phase.Store(duringReload)
	r.signal(syscall.SIGHUP)
	if m := r.waitLine(r.stderr, reloadRE, 30*time.Second); m[1] != "done" {
		t.Fatalf("reload failed\n%s", r.output())
	}
	l.phase.Store(afterReload)
	// Both new workers answer (ids 1 and 2 were the first two).
	l.waitFor(t, "both new workers answering", func(n [3]int, after map[int]bool) bool {
		return n[afterReload] >= 20 && len(after) >= 2
	})
	res := l.finish()

	var failed []string
	var n [3]int
	for _, a := range res {
		n[a.phase]++
		if a.err != nil {
			failed = append(failed, fmt.Sprintf("phase %d: %v", a.phase, a.err))
		} else if a.phase == afterReload && a.worker <= 2 {
			t.Errorf("request started after the reload was done went to old worker %d", a.worker)
		}
	}
	if len(failed) > 0 {
		t.Errorf("%d of %d requests failed across the reload:\n  %s", len(failed), len(res), strings.Join(failed[:min(len(failed), 10)], "\n  "))
	}
	if n[duringReload] == 0 {
		t.Errorf("no request was made during the reload: the load did not overlap it")
	}
	t.Logf("requests before/during/after the reload: %v", n)
}

// load is clients making one request per connection until finished.
type load struct {
	phase atomic.Int32
	stop  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once

	mu    sync.Mutex
	res   []phased
	poke  chan struct{}
	n     [3]int
	after map[int]bool // worker ids answering in afterReload
}

type phased struct {
	answer
	phase int32
}

// loadMax bounds the requests of each client.
const loadMax = 5000

func startLoad(addr string, clients int) *load {
	l := &load{stop: make(chan struct{}), poke: make(chan struct{}, 1), after: map[int]bool{}}
	for range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for range loadMax {
				select {
				case <-l.stop:
					return
				default:
				}
				p := l.phase.Load()
				a := get(addr, "/")
				l.mu.Lock()
				l.res = append(l.res, phased{a, p})
				l.n[p]++
				if p == afterReload && a.err == nil {
					l.after[a.worker] = true
				}
				l.mu.Unlock()
				select {
				case l.poke <- struct{}{}:
				default:
				}
			}
		}()
	}
	return l
}

// waitFor waits, on each answer, until cond holds over the counts per
// phase and the ids answering after the reload.
func (l *load) waitFor(t *testing.T, what string, cond func(n [3]int, after map[int]bool) bool) {
	t.Helper()
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		ok, n := cond(l.n, l.after), l.n
		l.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-l.poke:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s; answers per phase %v", what, n)
		}
	}
}

// finish stops the clients and returns every result.
func (l *load) finish() []phased {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.res)
}

// A Go program built with the library is a worker under rr with master
// dispatch: it joins the runner's address with sockshare.Listen and the
// master hands it every other connection.
func TestGoWorkerUnderMasterDispatch(t *testing.T) {
	t.Parallel()
	needCommand(t, "env")
	// The worker must know the address to Listen on: a port picked here,
	// free a moment ago; if another process took it since, pick again.
	var (
		r    *runnerProc
		addr string
	)
	for attempt := 1; ; attempt++ {
		addr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		r = startRunner(t, "-workers", "2", "-policy", "rr", "-dispatch", "master", "-listen", "tcp://"+addr,
			"--", "env", envRole+"=go-http", envAddr+"="+addr, os.Args[0])
		if r.findLine(r.stdout, listeningRE, startTimeout) != nil {
			break
		}
		r.wait(exitTimeout)
		if attempt == 1 && strings.Contains(r.stderr.String(), "address already in use") {
			continue
		}
		t.Fatalf("no listening line (runner %v)\n%s", r.state, r.output())
	}
	if got := r.listening("rr", 2); got != addr {
		t.Errorf("listening on %s, want %s", got, addr)
	}

	// One request at a time: round robin alternates.
	var as []answer
	for range 40 {
		as = append(as, get(addr, "/"))
	}
	per, errs := byWorker(as)
	if len(errs) > 0 {
		t.Fatalf("%d of %d requests failed, first: %v", len(errs), len(as), errs[0])
	}
	if len(per) != 2 {
		t.Fatalf("answers per worker %v; want both workers", per)
	}
	for i := 1; i < len(as); i++ {
		if as[i].worker == as[i-1].worker {
			t.Errorf("requests %d and %d both went to worker %d; want rr to alternate (answers per worker %v)", i-1, i, as[i].worker, per)
			break
		}
	}
	r.stop()
}
