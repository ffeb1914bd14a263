package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sockshare/sockshare"
	"github.com/sockshare/sockshare/policy"
)

// runResult is one (policy, workload, rep): one master, one load.
type runResult struct {
	Policy    policy.Name
	Effective policy.Name // the policy that served the address: differs on a fallback (rr on udp)
	Dispatch  string      // the -dispatch setting ("" when not set)
	Served    string      // the dispatch that served (ListenerInfo.Dispatch): master, kernel, or "" (shared, reuseport)
	Workload  string
	GMP       int  // the -gomaxprocs setting of this run
	Pin       bool // workers pinned to a CPU each
	Rep       int
	Addr      string

	Load    loadResult
	Workers []workerRun // every worker this master started, by slot then id

	MasterCPU time.Duration // the compare process during the load: master plus an idle orchestrator
	ClientCPU time.Duration // the load generator process
	Crashes   int           // workers that exited without being asked during the run
	MaxProcs  []int         // GOMAXPROCS the workers reported, distinct values
	Unknown   int64         // requests answered without a known X-Worker

	ServerSched schedSample // the workers (or baseline processes), summed, during the load
	MasterSched schedSample // this process during the load
	Idle, Steal float64     // the machine's idle and steal shares during the load (/proc/stat)
}

func (r *runResult) variant() variant {
	return variant{Policy: r.Policy, Dispatch: r.Dispatch, GMP: r.GMP, Pin: r.Pin}
}

// measure samples, around one load, what is not per worker: this
// process's CPU and scheduler counters and the machine's idle time.
type measure struct {
	cpu   time.Duration
	sched schedSample
	times cpuTimes
}

func startMeasure() *measure {
	return &measure{cpu: selfCPU(), sched: procSched(0), times: readCPUTimes()}
}

func (m *measure) stop(r *runResult) {
	r.MasterCPU = selfCPU() - m.cpu
	r.MasterSched = procSched(0).sub(m.sched)
	r.Idle, r.Steal = shares(m.times, readCPUTimes())
}

type workerRun struct {
	ID, Slot, PID int
	Requests      int64
	Connections   int64
	CPU           time.Duration // utime+stime during the load, from /proc/<pid>/stat
	Handed        uint64        // master dispatch: connections the master handed (WorkerInfo.Taken)
	Chosen        *uint64       // kernel dispatch: connections the kernel's program sent to this slot (ListenerInfo.Chosen)
}

func (r *runResult) rps() float64 {
	if r.Load.Elapsed <= 0 {
		return 0
	}
	return float64(r.Load.Requests) / r.Load.Elapsed.Seconds()
}

func (r *runResult) requestCounts() []float64 {
	xs := make([]float64, len(r.Workers))
	for i, w := range r.Workers {
		xs[i] = float64(w.Requests)
	}
	return xs
}

func (r *runResult) connCounts() []float64 {
	xs := make([]float64, len(r.Workers))
	for i, w := range r.Workers {
		xs[i] = float64(w.Connections)
	}
	return xs
}

func (r *runResult) connections() int64 {
	var n int64
	for _, w := range r.Workers {
		n += w.Connections
	}
	return n
}

func (r *runResult) errors() int64 {
	var n int64
	for _, v := range r.Load.Errors {
		n += v
	}
	return n
}

// workerEnv is the environment the workers get: ours without COMPARE_*
// and without GOMAXPROCS, so that -gomaxprocs (Config.WorkerGOMAXPROCS)
// decides rather than whatever the operator's shell exported.
func workerEnv(workload string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "COMPARE_") || strings.HasPrefix(kv, "GOMAXPROCS=") {
			continue
		}
		env = append(env, kv)
	}
	mode := "http"
	if isUDP(workload) {
		mode = "udp"
	}
	return append(env, envServe+"="+mode)
}

// driveLoad runs the load generator against addr and returns its answer
// and its CPU time.
func driveLoad(ctx context.Context, o *options, exe, addr, workload string, rep int) (*loadResult, time.Duration, error) {
	spec, _ := json.Marshal(loadConfig{
		Addr:        addr,
		Workload:    workload,
		Conns:       o.conns,
		Duration:    o.duration,
		Rate:        o.rate,
		Seed:        o.seed + uint64(rep),
		Timeout:     o.timeout,
		MaxRequests: maxRequests(o),
		Sources:     o.sources,
	})
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(loadEnv(), envLoad+"="+string(spec))
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return nil, 0, err
	}
	var cpu time.Duration
	if cmd.ProcessState != nil {
		cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	var res loadResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		return nil, 0, fmt.Errorf("answer: %w", err)
	}
	return &res, cpu, nil
}

// runOne starts a master under pol, waits for every worker to listen,
// drives the load, reads the workers' CPU and shuts the master down.
func runOne(ctx context.Context, o *options, v variant, workload string, rep int) (*runResult, error) {
	if isPseudo(v.Policy) {
		return runStandalone(ctx, o, v, workload, rep)
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	pol, gmp := v.Policy, v.GMP
	res := &runResult{Policy: pol, Dispatch: v.Dispatch, Workload: workload, GMP: gmp, Pin: v.Pin, Rep: rep}
	env := workerEnv(workload)
	if v.Pin {
		env = append(env, envPin+"=1")
	}

	var mu sync.Mutex
	forked := map[int]workerRun{}
	listening := map[int]bool{}
	procs := map[int]bool{}
	ready := make(chan struct{})
	failed := make(chan error, 1)
	loading := false
	m, err := sockshare.NewMaster(sockshare.Config{
		Workers:          o.workers,
		Policy:           string(pol),
		Dispatch:         v.Dispatch,
		Program:          exe,
		Args:             []string{},
		Env:              env,
		UDPSteering:      o.udpSteering,
		Stdout:           os.Stderr, // workers print nothing; keep stdout for the report
		Stderr:           os.Stderr,
		Logger:           slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		ShutdownTimeout:  5 * time.Second,
		ReadyTimeout:     20 * time.Second,
		WorkerGOMAXPROCS: gmp,
		OnEvent: func(e sockshare.Event) {
			mu.Lock()
			defer mu.Unlock()
			switch e.Type {
			case sockshare.EventFork:
				forked[e.WorkerID] = workerRun{ID: e.WorkerID, Slot: e.Slot, PID: e.PID}
			case sockshare.EventListening:
				if res.Addr == "" {
					res.Addr, res.Effective = e.Addr, e.Policy
				}
				wasReady := len(listening) >= o.workers
				listening[e.WorkerID] = true
				if !wasReady && len(listening) >= o.workers {
					close(ready)
				}
			case sockshare.EventListenError, sockshare.EventGiveUp:
				select {
				case failed <- fmt.Errorf("%v", e):
				default:
				}
			case sockshare.EventExit:
				if !e.Asked && loading {
					res.Crashes++
				}
			}
		},
		OnMessage: func(id int, payload []byte) {
			if v, ok := strings.CutPrefix(string(payload), "gomaxprocs="); ok {
				if n, err := strconv.Atoi(v); err == nil {
					mu.Lock()
					procs[n] = true
					mu.Unlock()
				}
			}
		},
	})
	if err != nil {
		return nil, err
	}
	mctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- m.Run(mctx) }()
	shutdown := func() error {
		stop()
		return <-done
	}

	select {
	case <-ready:
	case err := <-failed:
		shutdown()
		return nil, fmt.Errorf("%s: %w", pol, err)
	case err := <-done:
		if err == nil {
			err = errors.New("master stopped before the workers listened")
		}
		return nil, fmt.Errorf("%s: %w", pol, err)
	case <-time.After(20 * time.Second):
		shutdown()
		return nil, fmt.Errorf("%s: workers not listening after 20s", pol)
	case <-ctx.Done():
		shutdown()
		return nil, ctx.Err()
	}

	mu.Lock()
	addr := res.Addr
	loading = true
	mu.Unlock()
	infos := m.Workers()
	before := workerCPU(infos)
	schedBefore := map[int]schedSample{}
	for _, wi := range infos {
		schedBefore[wi.PID] = procSched(wi.PID)
	}
	meas := startMeasure()
	load, clientCPU, loadErr := driveLoad(ctx, o, exe, addr, workload, rep)

	// Read the workers' CPU before the master stops them.
	infos = m.Workers()
	var chosen []uint64
	for _, li := range m.Listeners() {
		if li.Addr == addr {
			res.Served, chosen = li.Dispatch, li.Chosen
		}
	}
	after := workerCPU(infos)
	for _, wi := range infos {
		if b, ok := schedBefore[wi.PID]; ok {
			res.ServerSched = res.ServerSched.add(procSched(wi.PID).sub(b))
		}
	}
	meas.stop(res)
	mu.Lock()
	loading = false
	mu.Unlock()
	if runErr := shutdown(); runErr != nil && loadErr == nil {
		loadErr = fmt.Errorf("master: %w", runErr)
	}
	if loadErr != nil {
		return nil, fmt.Errorf("%s %s: load generator: %w", pol, workload, loadErr)
	}
	res.Load, res.ClientCPU = *load, clientCPU

	mu.Lock()
	defer mu.Unlock()
	handed := map[int]uint64{}
	for _, wi := range infos {
		handed[wi.ID] = wi.Taken
	}
	for key, c := range res.Load.PerWorker {
		if id, err := strconv.Atoi(key); err != nil || forked[id].PID == 0 {
			res.Unknown += c.Requests
		}
	}
	for id, w := range forked {
		c := res.Load.PerWorker[strconv.Itoa(id)]
		w.Requests, w.Connections = c.Requests, c.Connections
		if a, ok := after[w.PID]; ok {
			w.CPU = a - before[w.PID]
		}
		w.Handed = handed[id]
		if w.Slot >= 0 && w.Slot < len(chosen) {
			c := chosen[w.Slot]
			w.Chosen = &c
		}
		res.Workers = append(res.Workers, w)
	}
	slices.SortFunc(res.Workers, func(a, b workerRun) int {
		if a.Slot != b.Slot {
			return a.Slot - b.Slot
		}
		return a.ID - b.ID
	})
	for n := range procs {
		res.MaxProcs = append(res.MaxProcs, n)
	}
	slices.Sort(res.MaxProcs)
	return res, nil
}

// loadEnv is the load generator's environment: ours, less any
// COMPARE_* the operator may have exported.
func loadEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "COMPARE_") {
			env = append(env, kv)
		}
	}
	return env
}

// maxRequests bounds one run's requests whatever happens: the open-loop
// arrivals, or a generous 200k requests/s for a closed loop.
func maxRequests(o *options) int64 {
	if o.rate > 0 {
		return int64(o.rate*o.duration.Seconds()) + int64(o.conns)
	}
	return int64(200_000*o.duration.Seconds()) + int64(o.conns)
}

// workerCPU reads utime+stime of every worker from /proc/<pid>/stat, by
// pid. Workers whose file cannot be read are left out.
func workerCPU(infos []sockshare.WorkerInfo) map[int]time.Duration {
	out := make(map[int]time.Duration, len(infos))
	for _, wi := range infos {
		if d, err := procCPU(wi.PID); err == nil {
			out[wi.PID] = d
		}
	}
	return out
}

// clockTick is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every
// Linux architecture Go supports (sysconf(_SC_CLK_TCK) needs cgo).
const clockTick = 100

func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return parseProcStat(string(b))
}

// parseProcStat returns utime+stime (fields 14 and 15) of a
// /proc/<pid>/stat line. The command name (field 2) is in parentheses and
// may itself hold spaces and parentheses, so fields are counted from the
// last ')'.
func parseProcStat(s string) (time.Duration, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3, the state
	if len(f) < 13 {
		return 0, errors.New("malformed /proc stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(ut+st) * time.Second / clockTick, nil
}
