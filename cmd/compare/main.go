// Command compare measures the fairness and throughput of every sockshare
// policy side by side, on this machine.
//
//	go run ./cmd/compare [-workers N] [-policies shared,rr,leastconn,reuseport,single,plain]
//	    [-workload short,keepalive,slow,churn] [-c 64] [-duration 5s] [-reps 3]
//	    [-rate R] [-gomaxprocs N[,N...]] [-dispatch master,kernel] [-pin off,on]
//	    [-sources N] [-udp-steering]
//	    [-seed N] [-timeout 5s] [-json] [-chart FILE.svg|FILE.png]
//
// For every repetition, workload and policy (policies interleaved: ABCD
// ABCD ...) it starts a fresh Master through the public API, whose workers
// are this same binary re-run as HTTP/1.1 servers on 127.0.0.1:0 that name
// themselves in X-Worker. It waits until every worker listens, then drives
// the address from a separate load-generator process (this binary again)
// that speaks HTTP/1.1 by hand over raw TCP:
//
//   - short: one request per connection (Connection: close);
//   - keepalive: -c persistent connections;
//   - slow: keep-alive, where a seeded PRNG makes 5% of requests sleep
//     20 ms and 1% spin 5 ms of CPU in the worker;
//   - churn: one request per connection, 0.5% of which spin 10 ms of CPU:
//     connections keep arriving while a worker is busy, which is where
//     leastconn's choice can differ from rr's (p99 counts the fast
//     requests queued behind a spin);
//   - udp: the workers echo datagrams instead (ListenPacket); -c flows,
//     each a connected socket with one datagram in flight;
//   - udp1: one flow with -c datagrams in flight, which SO_REUSEPORT's
//     hash sends to one worker unless -udp-steering attaches the cBPF
//     program. rr and leastconn fall back to shared on UDP, and the report
//     says so ("rr→shared").
//
// With -rate R the arrivals of the HTTP workloads are open loop at R
// requests/s over the -c connections, and latency counts from each
// request's scheduled time, so queueing shows.
//
// It reports requests, errors by kind, requests/s and latency percentiles;
// per worker the requests and connections it served (by X-Worker) and its
// CPU time from /proc; over the per-worker request counts Jain's index
// (Σx)²/(n·Σx²), max/min and the coefficient of variation; for reuseport
// the binomial expectation of the spread. Medians across repetitions are
// quoted with their min–max, because on a shared machine only figures from
// one interleaved run compare.
//
// The master runs inside this process; its CPU time is this process's
// getrusage during the load (the rest of this process only waits then).
// The load generator's CPU is reported apart, so one can see whether it
// was the bottleneck.
//
// Workers get GOMAXPROCS from -gomaxprocs through Config.WorkerGOMAXPROCS
// (0: the library's default, max(1, NumCPU/workers); -1: Go's default);
// a GOMAXPROCS in this process's environment is not passed on to them.
// Several values (-gomaxprocs 0,-1) are compared like policies, every
// setting in every repetition.
//
// Two pseudo-policies serve the same handler without sockshare, as
// baselines printed beside the policies (×1p is req/s relative to
// single): single, one standalone process with Go's default GOMAXPROCS
// (NumCPU); plain, -workers standalone processes that each bind their
// own SO_REUSEPORT socket, with the GOMAXPROCS the library would give
// its workers, and no master: the process model without the library.
//
// -dispatch sets Config.Dispatch (master, kernel or auto) for the
// policies that dispatch (rr, leastconn, sticky); a list compares them
// like policies, each in every repetition, while shared, reuseport and
// the baselines run once. The report names the dispatch that served
// (Master.Listeners), and under kernel dispatch the kernel program's
// per-slot counts (ListenerInfo.Chosen) stand where the master's handed
// counts stand under master dispatch.
//
// -pin pins worker slot i (and plain's process i) to CPU i % NumCPU, all
// its threads, at start; "off,on" compares both like policies.
//
// -sources N makes the load generator bind each new connection to the
// next of N source addresses (127.0.1.1, 127.0.1.2, ...; all of
// 127.0.0.0/8 is local), round robin, and report for every source the
// workers that answered it: how many sources stayed on one worker, the
// lowest share of a source's connections on its most frequent worker,
// and Jain over the workers' connections (for sticky).
//
// For "what isolation costs" every run also reads, per request, the
// server processes' and the load generator's CPU, time runnable but
// waiting for a CPU and context switches (/proc/<pid>/task/*/schedstat
// and status), and the machine's idle and steal shares (/proc/stat).
//
// Bad flags print one line on stderr and exit with status 2.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sockshare/sockshare"
	"github.com/sockshare/sockshare/policy"
)

func main() {
	if sockshare.IsWorker() {
		os.Exit(serve())
	}
	if spec, ok := os.LookupEnv(envLoad); ok {
		os.Exit(loadMain(spec))
	}
	if spec, ok := os.LookupEnv(envStandalone); ok {
		os.Exit(standaloneMain(spec))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

var workloadNames = []string{"short", "keepalive", "slow", "churn", "udp", "udp1"}

// variant is one server configuration compared: a policy (or a
// pseudo-policy) under one setting of every other axis.
type variant struct {
	Policy   policy.Name
	Dispatch string // -dispatch value, "" when not set
	GMP      int    // -gomaxprocs setting
	Pin      bool   // -pin
}

type options struct {
	workers     int
	policies    []policy.Name
	workloads   []string
	conns       int
	duration    time.Duration
	reps        int
	rate        float64
	gomaxprocs  []int
	udpSteering bool
	json        bool
	chart       string
	seed        uint64
	timeout     time.Duration
	cpuprofile  string
	masterProcs int
	pins        []bool
	sources     int
	dispatches  []string // -dispatch values; [""] when not given (the library's default)
}

// variants lists, in run order, every configuration one repetition of
// one workload runs: policies innermost, so that they interleave. The
// single baseline does not depend on -gomaxprocs or -pin and runs once.
func (o *options) variants() []variant {
	var vs []variant
	for gi, gmp := range o.gomaxprocs {
		for pi, pin := range o.pins {
			for di, disp := range o.dispatches {
				for _, pol := range o.policies {
					switch {
					case pol == polSingle:
						if gi == 0 && pi == 0 && di == 0 {
							vs = append(vs, variant{Policy: pol})
						}
					case !pol.Dispatches():
						// shared, reuseport, plain: no dispatch to choose
						if di == 0 {
							vs = append(vs, variant{Policy: pol, GMP: gmp, Pin: pin})
						}
					default:
						vs = append(vs, variant{Policy: pol, Dispatch: disp, GMP: gmp, Pin: pin})
					}
				}
			}
		}
	}
	return vs
}

// parseFlags returns the options, or an error of one line.
func parseFlags(args []string) (*options, error) {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o := &options{}
	var err error
	var pols, loads string
	fs.IntVar(&o.workers, "workers", runtime.NumCPU(), "worker processes per master")
	fs.StringVar(&pols, "policies", joinNames(policy.Names()), "comma-separated policies to compare; also single (one standalone process, GOMAXPROCS=NumCPU) and plain (-workers standalone SO_REUSEPORT processes, no master)")
	fs.StringVar(&loads, "workload", "short,keepalive,slow", "comma-separated workloads: short, keepalive, slow, churn (short connections, 0.5% spin 10 ms), udp (c flows), udp1 (one flow, c in flight)")
	fs.IntVar(&o.conns, "c", 64, "concurrent connections of the load generator")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "load duration of each run")
	fs.IntVar(&o.reps, "reps", 3, "repetitions, interleaved across policies")
	fs.Float64Var(&o.rate, "rate", 0, "open-loop arrivals in requests/s (0: closed loop)")
	gmp := fs.String("gomaxprocs", "0", "workers' GOMAXPROCS: 0 library default max(1,NumCPU/workers), -1 Go default, N; a list compares them")
	fs.BoolVar(&o.udpSteering, "udp-steering", false, "reuseport UDP: spread datagrams with the cBPF program (Config.UDPSteering)")
	fs.BoolVar(&o.json, "json", false, "print JSON instead of the table")
	fs.StringVar(&o.chart, "chart", "", "also draw the per-worker distribution into FILE.svg or FILE.png")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the slow workload's PRNG")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "per-request timeout of the load generator")
	fs.IntVar(&o.masterProcs, "master-gomaxprocs", 0, "GOMAXPROCS of this process, which hosts the masters (0: Go default); the load generator keeps its own")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of this process, which hosts the masters (the load generator is another process), to FILE")
	pin := fs.String("pin", "off", "pin worker slot i to CPU i % NumCPU: off, on, or off,on to compare")
	disp := fs.String("dispatch", "", "who chooses the worker under rr, leastconn and sticky: master, kernel, auto; a list compares them (default: the library's, SOCKSHARE_DISPATCH then auto)")
	fs.IntVar(&o.sources, "sources", 0, "client source addresses: each connection binds 127.0.X.Y, the next of N round robin (0: the kernel's choice)")
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.workers < 1 || o.workers > sockshare.MaxWorkers {
		return nil, fmt.Errorf("-workers must be between 1 and %d, got %d", sockshare.MaxWorkers, o.workers)
	}
	if o.conns < 1 || o.conns > 10_000 {
		return nil, fmt.Errorf("-c must be between 1 and 10000, got %d", o.conns)
	}
	if o.reps < 1 {
		return nil, fmt.Errorf("-reps must be at least 1, got %d", o.reps)
	}
	if o.duration <= 0 || o.duration > time.Hour {
		return nil, fmt.Errorf("-duration must be positive and at most 1h, got %v", o.duration)
	}
	if o.timeout <= 0 {
		return nil, fmt.Errorf("-timeout must be positive, got %v", o.timeout)
	}
	if o.rate < 0 || o.rate > 1e7 {
		return nil, fmt.Errorf("-rate must be between 0 and 1e7 requests/s, got %v", o.rate)
	}
	for _, s := range splitList(*gmp) {
		n, err := strconv.Atoi(s)
		if err != nil || n < -1 || n > 4096 {
			return nil, fmt.Errorf("-gomaxprocs: want -1 (Go default), 0 (library default) or a positive number, got %q", s)
		}
		if !slices.Contains(o.gomaxprocs, n) {
			o.gomaxprocs = append(o.gomaxprocs, n)
		}
	}
	if len(o.gomaxprocs) == 0 {
		return nil, errors.New("-gomaxprocs: no value given")
	}
	if o.chart != "" {
		switch strings.ToLower(filepath.Ext(o.chart)) {
		case ".svg", ".png":
		default:
			return nil, fmt.Errorf("-chart %q: want a .svg or .png file name", o.chart)
		}
	}
	for _, s := range splitList(*pin) {
		var on bool
		switch strings.ToLower(s) {
		case "off", "false", "0":
		case "on", "true", "1":
			on = true
		default:
			return nil, fmt.Errorf("-pin: want off, on or off,on, got %q", s)
		}
		if !slices.Contains(o.pins, on) {
			o.pins = append(o.pins, on)
		}
	}
	if len(o.pins) == 0 {
		return nil, errors.New("-pin: no value given")
	}
	for _, s := range splitList(*disp) {
		s = strings.ToLower(s)
		switch s {
		case sockshare.DispatchMaster, sockshare.DispatchKernel, sockshare.DispatchAuto:
		default:
			return nil, fmt.Errorf("-dispatch: unknown dispatch %q (valid: master, kernel, auto)", s)
		}
		if !slices.Contains(o.dispatches, s) {
			o.dispatches = append(o.dispatches, s)
		}
	}
	if len(o.dispatches) == 0 {
		o.dispatches = []string{""}
	}
	if o.sources < 0 || o.sources > maxSources {
		return nil, fmt.Errorf("-sources must be between 0 and %d, got %d", maxSources, o.sources)
	}
	for _, s := range splitList(pols) {
		var p policy.Name
		if pseudo := policy.Name(strings.ToLower(s)); isPseudo(pseudo) {
			p = pseudo
		} else if p, err = policy.Parse(s); err != nil {
			return nil, fmt.Errorf("-policies: %w", err)
		}
		if !slices.Contains(o.policies, p) {
			o.policies = append(o.policies, p)
		}
	}
	if len(o.policies) == 0 {
		return nil, errors.New("-policies: no policy given")
	}
	for _, s := range splitList(loads) {
		s = strings.ToLower(s)
		if !slices.Contains(workloadNames, s) {
			return nil, fmt.Errorf("-workload: unknown workload %q (valid: %s)", s, strings.Join(workloadNames, ", "))
		}
		if !slices.Contains(o.workloads, s) {
			o.workloads = append(o.workloads, s)
		}
	}
	if len(o.workloads) == 0 {
		return nil, errors.New("-workload: no workload given")
	}
	if slices.ContainsFunc(o.policies, isPseudo) && slices.ContainsFunc(o.workloads, isUDP) {
		return nil, errors.New("-policies single and plain serve HTTP only, not the udp workloads")
	}
	if o.sources > 0 && slices.ContainsFunc(o.workloads, isUDP) {
		return nil, errors.New("-sources applies to the TCP workloads, not udp")
	}
	if o.rate > 0 && slices.ContainsFunc(o.workloads, isUDP) {
		return nil, errors.New("-rate applies to the HTTP workloads (short, keepalive, slow), not udp")
	}
	return o, nil
}

func splitList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func joinNames(ns []policy.Name) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = string(n)
	}
	return strings.Join(s, ",")
}

const usage = `usage: compare [-workers N] [-policies shared,rr,leastconn,reuseport,single,plain]
               [-workload short,keepalive,slow,churn] [-c 64] [-duration 5s] [-reps 3] [-rate R]
               [-gomaxprocs N[,N...]] [-dispatch master,kernel] [-pin off,on] [-sources N]
               [-seed N] [-timeout 5s]
               [-udp-steering] [-json] [-chart FILE.svg|FILE.png]
`

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stderr, usage)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "compare: %v\n", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	if o.masterProcs > 0 {
		runtime.GOMAXPROCS(o.masterProcs)
	}
	if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			fmt.Fprintf(stderr, "compare: %v\n", err)
			return 2
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "compare: %v\n", err)
			return 2
		}
		defer pprof.StopCPUProfile()
	}

	mach := readMachine()
	variants := o.variants()
	prog := newProgress(stderr, len(o.workloads)*len(variants)*o.reps)
	var runs []*runResult
	for rep := 1; rep <= o.reps; rep++ {
		for _, wl := range o.workloads {
			for _, v := range variants {
				prog.start(rep, o.reps, wl, v)
				r, err := runOne(ctx, o, v, wl, rep)
				if err != nil {
					prog.clear()
					if ctx.Err() != nil {
						fmt.Fprintln(stderr, "compare: interrupted")
						return 1
					}
					fmt.Fprintf(stderr, "compare: %v\n", err)
					return 1
				}
				prog.done(r)
				runs = append(runs, r)
			}
		}
	}
	prog.clear()
	mach.finish(runs)

	rep := buildReport(o, mach, runs)
	if o.json {
		if err := writeJSON(stdout, rep); err != nil {
			fmt.Fprintf(stderr, "compare: %v\n", err)
			return 1
		}
	} else {
		writeText(stdout, o, rep)
	}
	if o.chart != "" {
		if err := writeChart(o.chart, rep); err != nil {
			fmt.Fprintf(stderr, "compare: chart: %v\n", err)
			return 1
		}
		msgOut := stdout
		if o.json {
			msgOut = stderr
		}
		fmt.Fprintf(msgOut, "chart written to %s\n", o.chart)
	}
	return 0
}
