package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sockshare/sockshare/policy"
)

// num is a float64 that encodes NaN and ±Inf (undefined statistics, such
// as max/min with an idle worker) as JSON null.
type num float64

func (n num) MarshalJSON() ([]byte, error) {
	f := float64(n)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, f, 'g', -1, 64), nil
}

// report is the whole output; its JSON form is what -json prints.
type report struct {
	Machine *machine   `json:"machine"`
	Config  configJSON `json:"config"`
	Results []result   `json:"results"`
}

type configJSON struct {
	Workers    int      `json:"workers"`
	Policies   []string `json:"policies"`
	Workloads  []string `json:"workloads"`
	Conns      int      `json:"c"`
	DurationS  num      `json:"duration_s"`
	Reps       int      `json:"reps"`
	Rate       num      `json:"rate"`
	GOMAXPROCS []int    `json:"gomaxprocs"` // -gomaxprocs settings: 0 library default, -1 Go default
	Pins       []bool   `json:"pin"`
	Sources    int      `json:"sources"`
	UDPSteer   bool     `json:"udp_steering"`
	Seed       uint64   `json:"seed"`
}

// result is one (policy, workload). Its run-level fields (requests,
// errors, latency, per_worker, jain, ...) all come from one run, the one
// with the median requests/s (the lower median for an even count), so
// that they agree with each other; across_reps gives the median and
// min–max of each figure over every repetition, and runs each run.
type result struct {
	Policy       string `json:"policy"`
	Effective    string `json:"effective_policy"` // differs when the policy does not apply (rr on udp: shared)
	Workload     string `json:"workload"`
	Dispatch     string `json:"dispatch,omitempty"`        // the -dispatch setting
	Served       string `json:"dispatch_served,omitempty"` // who chose the workers: master, kernel ("" for shared, reuseport)
	GOMAXPROCS   int    `json:"gomaxprocs"`                // the -gomaxprocs setting
	Pin          bool   `json:"pin"`                       // workers pinned to a CPU each
	WorkerProcs  []int  `json:"worker_gomaxprocs"`         // what the workers reported
	showGMP      bool   // several settings compared: name it in labels
	showPin      bool
	Workers      int              `json:"workers"`
	Rep          int              `json:"rep"`
	Requests     int64            `json:"requests"`
	Errors       int64            `json:"errors"`
	ErrorsByKind map[string]int64 `json:"errors_by_kind"`
	Unsent       int64            `json:"unsent"`
	Connections  int64            `json:"connections"`
	ElapsedS     num              `json:"elapsed_s"`
	RPS          num              `json:"rps"`
	P50          num              `json:"p50_ms"`
	P90          num              `json:"p90_ms"`
	P99          num              `json:"p99_ms"`
	Max          num              `json:"max_ms"`
	PerWorker    []workerJSON     `json:"per_worker"`
	Jain         num              `json:"jain"`
	MaxMin       num              `json:"max_min"`
	CV           num              `json:"cv"`
	ConnsJain    num              `json:"conns_jain"`
	Expected     *expectJSON      `json:"reuseport_expected,omitempty"`
	CPU          cpuJSON          `json:"cpu_s"`
	Sched        schedJSON        `json:"sched"`
	Sticky       *stickyJSON      `json:"sticky,omitempty"` // -sources: how each source address was served
	Crashes      int              `json:"crashes"`
	Unattributed int64            `json:"unattributed"` // requests whose X-Worker named no worker of this master
	AcrossReps   acrossJSON       `json:"across_reps"`
	Runs         []runJSON        `json:"runs"`
}

type workerJSON struct {
	ID          int     `json:"id"`
	Slot        int     `json:"slot"`
	PID         int     `json:"pid"`
	Requests    int64   `json:"requests"`
	Connections int64   `json:"connections"`
	CPU         num     `json:"cpu_s"`
	Handed      *uint64 `json:"handed,omitempty"` // master dispatch: the master's own count
	Chosen      *uint64 `json:"chosen,omitempty"` // kernel dispatch: the kernel program's count for the slot
}

// expectJSON is the binomial expectation for n connections spread
// uniformly at random over k workers, as SO_REUSEPORT's hash does.
type expectJSON struct {
	Connections int64 `json:"connections"`
	CV          num   `json:"cv"`
	Jain        num   `json:"jain"`
	JainP95     num   `json:"jain_p95"` // 95% of random splits are at least this fair
}

// schedJSON is the scheduler's view of the median run, from /proc: the
// server processes (workers or baseline processes) summed, this process
// (the master, or an idle orchestrator for the baselines), the load
// generator, and the machine's idle and steal shares.
type schedJSON struct {
	Server schedSample `json:"server"`
	Master schedSample `json:"master"`
	Client schedSample `json:"client"`
	Idle   num         `json:"idle_share"`
	Steal  num         `json:"steal_share"`
}

// stickyJSON is how the connections of each client source address were
// spread over the workers (-sources).
type stickyJSON struct {
	Sources          int   `json:"sources"`            // source addresses that made a connection
	OneWorker        int   `json:"one_worker"`         // sources whose every connection reached one worker
	MinShare         num   `json:"min_share"`          // the lowest share of a source's connections on its most frequent worker
	MedianShare      num   `json:"median_share"`       // the median of that share
	SourcesPerWorker []int `json:"sources_per_worker"` // sources whose most frequent worker is each worker, by slot
	ConnsJain        num   `json:"conns_jain"`         // Jain over the workers' connection counts
}

type cpuJSON struct {
	Workers   num `json:"workers"`
	Master    num `json:"master"` // the compare process: the master plus an idle orchestrator
	Client    num `json:"client"` // the load generator
	Available num `json:"available"`
}

type spread struct {
	Median num `json:"median"`
	Min    num `json:"min"`
	Max    num `json:"max"`
}

type acrossJSON struct {
	RPS    spread `json:"rps"`
	P50    spread `json:"p50_ms"`
	P90    spread `json:"p90_ms"`
	P99    spread `json:"p99_ms"`
	Max    spread `json:"max_ms"`
	Jain   spread `json:"jain"`
	MaxMin spread `json:"max_min"`
	CV     spread `json:"cv"`
	Errors int64  `json:"errors"` // summed over the repetitions
}

type runJSON struct {
	Rep       int     `json:"rep"`
	Requests  int64   `json:"requests"`
	Errors    int64   `json:"errors"`
	RPS       num     `json:"rps"`
	P50       num     `json:"p50_ms"`
	P99       num     `json:"p99_ms"`
	Jain      num     `json:"jain"`
	CV        num     `json:"cv"`
	MaxMin    num     `json:"max_min"`
	PerWorker []int64 `json:"per_worker_requests"`
}

func ms(d time.Duration) num { return num(float64(d) / float64(time.Millisecond)) }

func spreadOf(rs []*runResult, f func(*runResult) float64) spread {
	xs := make([]float64, len(rs))
	for i, r := range rs {
		xs[i] = f(r)
	}
	if len(xs) == 0 {
		return spread{num(math.NaN()), num(math.NaN()), num(math.NaN())}
	}
	return spread{num(Median(xs)), num(slices.Min(xs)), num(slices.Max(xs))}
}

// buildReport groups the runs by workload then variant, in run order.
func buildReport(o *options, mach *machine, runs []*runResult) *report {
	rep := &report{Machine: mach, Config: configJSON{
		Workers: o.workers, Workloads: o.workloads, Conns: o.conns,
		DurationS: num(o.duration.Seconds()), Reps: o.reps, Rate: num(o.rate),
		GOMAXPROCS: o.gomaxprocs, Pins: o.pins, Sources: o.sources, UDPSteer: o.udpSteering, Seed: o.seed,
	}}
	for _, p := range o.policies {
		rep.Config.Policies = append(rep.Config.Policies, string(p))
	}
	for _, wl := range o.workloads {
		for _, v := range o.variants() {
			var rs []*runResult
			for _, r := range runs {
				if r.Workload == wl && r.variant() == v {
					rs = append(rs, r)
				}
			}
			if len(rs) > 0 {
				res := summarize(rs)
				res.showGMP = len(o.gomaxprocs) > 1 && v.Policy != polSingle
				res.showPin = len(o.pins) > 1 && v.Policy != polSingle
				rep.Results = append(rep.Results, res)
			}
		}
	}
	return rep
}

func summarize(rs []*runResult) result {
	byRPS := slices.Clone(rs)
	slices.SortStableFunc(byRPS, func(a, b *runResult) int {
		if a.rps() < b.rps() {
			return -1
		}
		if a.rps() > b.rps() {
			return 1
		}
		return 0
	})
	r := byRPS[(len(byRPS)-1)/2] // the nearest-rank median, as Median
	counts := r.requestCounts()
	res := result{
		Policy: string(r.Policy), Effective: string(r.Effective), Workload: r.Workload,
		Dispatch: r.Dispatch, Served: r.Served, GOMAXPROCS: r.GMP, Pin: r.Pin, WorkerProcs: r.MaxProcs, Workers: len(r.Workers), Rep: r.Rep,
		Requests: r.Load.Requests, Errors: r.errors(), ErrorsByKind: r.Load.Errors,
		Unsent: r.Load.Unsent, Connections: r.connections(),
		ElapsedS: num(r.Load.Elapsed.Seconds()), RPS: num(r.rps()),
		P50: ms(r.Load.P50), P90: ms(r.Load.P90), P99: ms(r.Load.P99), Max: ms(r.Load.Max),
		Jain: num(Jain(counts)), MaxMin: num(MaxMin(counts)), CV: num(CV(counts)),
		ConnsJain: num(Jain(r.connCounts())), Crashes: r.Crashes, Unattributed: r.Unknown,
	}
	if res.ErrorsByKind == nil {
		res.ErrorsByKind = map[string]int64{}
	}
	var wcpu time.Duration
	for _, w := range r.Workers {
		wj := workerJSON{ID: w.ID, Slot: w.Slot, PID: w.PID, Requests: w.Requests, Connections: w.Connections, CPU: num(w.CPU.Seconds()), Chosen: w.Chosen}
		if r.Effective.Dispatches() && r.Served != "kernel" {
			h := w.Handed
			wj.Handed = &h
		}
		res.PerWorker = append(res.PerWorker, wj)
		wcpu += w.CPU
	}
	res.CPU = cpuJSON{
		Workers: num(wcpu.Seconds()), Master: num(r.MasterCPU.Seconds()), Client: num(r.ClientCPU.Seconds()),
		Available: num(r.Load.Elapsed.Seconds() * float64(runtime.NumCPU())),
	}
	res.Sched = schedJSON{Server: r.ServerSched, Master: r.MasterSched, Client: r.Load.Sched, Idle: num(r.Idle), Steal: num(r.Steal)}
	res.Sticky = stickiness(r)
	if r.Effective == policy.ReusePort || r.Effective == polPlain {
		n, k := int(res.Connections), len(r.Workers)
		res.Expected = &expectJSON{Connections: res.Connections, CV: num(ExpectedCV(n, k)), Jain: num(ExpectedJain(n, k)), JainP95: num(JainP95(n, k))}
	}
	res.AcrossReps = acrossJSON{
		RPS:    spreadOf(rs, (*runResult).rps),
		P50:    spreadOf(rs, func(r *runResult) float64 { return float64(ms(r.Load.P50)) }),
		P90:    spreadOf(rs, func(r *runResult) float64 { return float64(ms(r.Load.P90)) }),
		P99:    spreadOf(rs, func(r *runResult) float64 { return float64(ms(r.Load.P99)) }),
		Max:    spreadOf(rs, func(r *runResult) float64 { return float64(ms(r.Load.Max)) }),
		Jain:   spreadOf(rs, func(r *runResult) float64 { return Jain(r.requestCounts()) }),
		MaxMin: spreadOf(rs, func(r *runResult) float64 { return MaxMin(r.requestCounts()) }),
		CV:     spreadOf(rs, func(r *runResult) float64 { return CV(r.requestCounts()) }),
	}
	for _, x := range rs {
		res.AcrossReps.Errors += x.errors()
		rj := runJSON{
			Rep: x.Rep, Requests: x.Load.Requests, Errors: x.errors(), RPS: num(x.rps()),
			P50: ms(x.Load.P50), P99: ms(x.Load.P99),
			Jain: num(Jain(x.requestCounts())), CV: num(CV(x.requestCounts())), MaxMin: num(MaxMin(x.requestCounts())),
		}
		for _, w := range x.Workers {
			rj.PerWorker = append(rj.PerWorker, w.Requests)
		}
		res.Runs = append(res.Runs, rj)
	}
	return res
}

func writeJSON(w io.Writer, rep *report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// Text output.

func writeText(w io.Writer, o *options, rep *report) {
	m := rep.Machine
	fmt.Fprintf(w, "sockshare compare  %s\n", m.Date)
	fmt.Fprintf(w, "machine: kernel %s, %d CPUs", m.Kernel, m.NProc)
	if m.CPUModel != "" {
		fmt.Fprintf(w, " (%s)", m.CPUModel)
	}
	fmt.Fprintf(w, ", %s, somaxconn %s, tcp_migrate_req %s, tcp_tw_reuse %s, ports %s\n",
		m.Go, m.Somaxconn, m.TCPMigrateReq, m.TCPTwReuse, m.PortRange)
	fmt.Fprintf(w, "load average before %s, after %s\n", m.LoadBefore, m.LoadAfter)
	loop := "closed loop"
	if o.rate > 0 {
		loop = fmt.Sprintf("open loop at %s req/s (latency from the scheduled arrival)", thousands(o.rate))
	}
	if o.udpSteering {
		loop += ", udp steering"
	}
	fmt.Fprintf(w, "run: %d workers (GOMAXPROCS %s as reported; -gomaxprocs %s), client GOMAXPROCS %d, c=%d, %v per run, %d reps interleaved, %s\n",
		o.workers, intsString(m.WorkerProcs), intsString(o.gomaxprocs), m.ClientProcs, o.conns, o.duration, o.reps, loop)
	if o.sources > 0 {
		loop += fmt.Sprintf(", %d client source addresses", o.sources)
	}
	fmt.Fprintf(w, "figures: median over reps [min-max]; latency in ms; jain, max/min, cv over per-worker request counts; ×rp = req/s relative to reuseport, ×1p relative to single (one process); conns = connections (udp: flows a worker answered)\n\n")

	t := [][]string{{"workload", "policy", "req/s", "[min-max]", "×rp", "×1p", "p50", "p90", "p99", "max", "errors", "jain", "[min-max]", "max/min", "cv", "conns"}}
	for _, r := range rep.Results {
		a := r.AcrossReps
		t = append(t, []string{
			r.Workload, r.label(),
			thousands(float64(a.RPS.Median)), "[" + thousands(float64(a.RPS.Min)) + "-" + thousands(float64(a.RPS.Max)) + "]",
			ratioTo(rep, r, string(policy.ReusePort)), ratioTo(rep, r, string(polSingle)),
			fmtMs(a.P50.Median), fmtMs(a.P90.Median), fmtMs(a.P99.Median), fmtMs(a.Max.Median),
			strconv.FormatInt(a.Errors, 10),
			fmtFrac(a.Jain.Median), "[" + fmtFrac(a.Jain.Min) + "-" + fmtFrac(a.Jain.Max) + "]",
			fmtRatio(a.MaxMin.Median), fmtFrac(a.CV.Median), strconv.FormatInt(r.Connections, 10),
		})
	}
	printTable(w, t, 2)

	writeComparisons(w, rep)
	writeErrors(w, rep)
	writeCPU(w, rep)
	writeSched(w, rep)
	writeSticky(w, rep)
	writeBars(w, rep)
}

// ratioTo is r's median req/s relative to the base policy's on the same
// workload and settings ("-" when there is none).
func ratioTo(rep *report, r result, base string) string {
	if x := findBase(rep, r, base); x != nil && x.AcrossReps.RPS.Median > 0 {
		return fmt.Sprintf("%.2f", float64(r.AcrossReps.RPS.Median/x.AcrossReps.RPS.Median))
	}
	return "-"
}

// findBase is the result of policy base that r compares with: the same
// workload, GOMAXPROCS setting and pinning (single has neither), and
// the same dispatch where base ran under it.
func findBase(rep *report, r result, base string) *result {
	var any *result
	for i := range rep.Results {
		x := &rep.Results[i]
		if x.Workload != r.Workload || x.Policy != base {
			continue
		}
		if base != string(polSingle) && (x.GOMAXPROCS != r.GOMAXPROCS || x.Pin != r.Pin) {
			continue
		}
		if x.Dispatch == r.Dispatch {
			return x
		}
		if any == nil {
			any = x
		}
	}
	return any
}

func find(rep *report, workload string, gmp int, pol string) *result {
	for i := range rep.Results {
		r := &rep.Results[i]
		if r.Workload == workload && r.GOMAXPROCS == gmp && r.Policy == pol {
			return r
		}
	}
	return nil
}

// writeComparisons prints the pairs people ask about: every policy
// against the kernel's (reuseport) and against one process (single), and
// leastconn against rr under the same settings.
func writeComparisons(w io.Writer, rep *report) {
	var lines []string
	for _, wl := range rep.Config.Workloads {
		for _, r := range rep.Results {
			if r.Workload != wl {
				continue
			}
			var parts []string
			for _, base := range []string{string(policy.ReusePort), string(polSingle)} {
				if r.Policy == base {
					continue
				}
				if x := findBase(rep, r, base); x != nil && x.AcrossReps.RPS.Median > 0 {
					parts = append(parts, fmt.Sprintf("/%s %.2f%s", base, float64(r.AcrossReps.RPS.Median/x.AcrossReps.RPS.Median), paired(r, *x)))
				}
			}
			if len(parts) > 0 {
				lines = append(lines, fmt.Sprintf("%s %s: req/s %s", wl, r.label(), strings.Join(parts, ", ")))
			}
			if r.Dispatch != "" && r.Served == "kernel" {
				for i := range rep.Results {
					m := &rep.Results[i]
					if m.Workload == wl && m.Policy == r.Policy && m.Served == "master" && m.GOMAXPROCS == r.GOMAXPROCS && m.Pin == r.Pin && m.AcrossReps.RPS.Median > 0 {
						lines = append(lines, fmt.Sprintf("%s %s vs %s: req/s %.2f%s, master µs/req %s vs %s, p99 %s vs %s ms",
							wl, r.label(), m.label(), float64(r.AcrossReps.RPS.Median/m.AcrossReps.RPS.Median), paired(r, *m),
							perReq(float64(r.CPU.Master)*1e6, r.Requests), perReq(float64(m.CPU.Master)*1e6, m.Requests),
							fmtMs(r.AcrossReps.P99.Median), fmtMs(m.AcrossReps.P99.Median)))
					}
				}
			}
			if r.Policy == string(policy.LeastConn) {
				if rr := findBase(rep, r, string(policy.RR)); rr != nil && rr.Dispatch == r.Dispatch {
					lines = append(lines, fmt.Sprintf("%s %s vs %s: p99 %s vs %s ms, p90 %s vs %s ms, jain %s vs %s, req/s %s vs %s",
						wl, r.label(), rr.label(), fmtMs(r.AcrossReps.P99.Median), fmtMs(rr.AcrossReps.P99.Median),
						fmtMs(r.AcrossReps.P90.Median), fmtMs(rr.AcrossReps.P90.Median),
						fmtFrac(r.AcrossReps.Jain.Median), fmtFrac(rr.AcrossReps.Jain.Median),
						thousands(float64(r.AcrossReps.RPS.Median)), thousands(float64(rr.AcrossReps.RPS.Median))))
				}
			}
		}
		if len(rep.Config.GOMAXPROCS) > 1 {
			// The same policy under each setting, against the first.
			first := rep.Config.GOMAXPROCS[0]
			for _, p := range rep.Config.Policies {
				a := find(rep, wl, first, p)
				if a == nil || a.AcrossReps.RPS.Median <= 0 || p == string(polSingle) {
					continue
				}
				var parts []string
				for _, gmp := range rep.Config.GOMAXPROCS[1:] {
					if b := find(rep, wl, gmp, p); b != nil {
						parts = append(parts, fmt.Sprintf("gmp=%s/gmp=%s %.2f", gmpName(gmp), gmpName(first), float64(b.AcrossReps.RPS.Median/a.AcrossReps.RPS.Median)))
					}
				}
				lines = append(lines, fmt.Sprintf("%s %s: req/s %s", wl, p, strings.Join(parts, ", ")))
			}
		}
	}
	if len(lines) > 0 {
		fmt.Fprintf(w, "\ncomparisons (medians):\n")
		for _, l := range lines {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
}

// paired is the ratio of r's req/s to base's run by run, each repetition
// with its own (the two ran one after the other), as " (per rep: median
// [min-max])"; "" with fewer than two repetitions. On a machine whose
// load drifts it is steadier than the ratio of the medians.
func paired(r, base result) string {
	var xs []float64
	for _, a := range r.Runs {
		for _, b := range base.Runs {
			if a.Rep == b.Rep && b.RPS > 0 {
				xs = append(xs, float64(a.RPS/b.RPS))
			}
		}
	}
	if len(xs) < 2 {
		return ""
	}
	return fmt.Sprintf(" (per rep %.2f [%.2f-%.2f])", Median(xs), slices.Min(xs), slices.Max(xs))
}

func writeErrors(w io.Writer, rep *report) {
	var lines []string
	for _, r := range rep.Results {
		if r.AcrossReps.Errors == 0 && r.Unsent == 0 && r.Crashes == 0 && r.Unattributed == 0 {
			continue
		}
		var kinds []string
		for _, k := range errKindNames {
			if n := r.ErrorsByKind[k]; n > 0 {
				kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
			}
		}
		lines = append(lines, fmt.Sprintf("%s %s: %d errors over all reps; median run (rep %d): %s; unsent %d; worker crashes %d; unattributed %d",
			r.Workload, r.Policy, r.AcrossReps.Errors, r.Rep, orNone(strings.Join(kinds, ", ")), r.Unsent, r.Crashes, r.Unattributed))
	}
	if len(lines) > 0 {
		fmt.Fprintf(w, "\nerrors, unsent open-loop arrivals, crashes:\n")
		for _, l := range lines {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func writeCPU(w io.Writer, rep *report) {
	fmt.Fprintf(w, "\nCPU seconds during the median run (available = elapsed × nproc; master = this process, which hosts it; µs per request):\n")
	t := [][]string{{"workload", "policy", "workers", "master", "client", "available", "client share", "workers µs/req", "master µs/req", "client µs/req"}}
	for _, r := range rep.Results {
		share := "-"
		if r.CPU.Available > 0 {
			share = fmt.Sprintf("%.0f%%", 100*float64(r.CPU.Client/r.CPU.Available))
		}
		t = append(t, []string{r.Workload, r.label(),
			fmt.Sprintf("%.2f", float64(r.CPU.Workers)), fmt.Sprintf("%.2f", float64(r.CPU.Master)),
			fmt.Sprintf("%.2f", float64(r.CPU.Client)), fmt.Sprintf("%.2f", float64(r.CPU.Available)), share,
			perReq(float64(r.CPU.Workers)*1e6, r.Requests), perReq(float64(r.CPU.Master)*1e6, r.Requests),
			perReq(float64(r.CPU.Client)*1e6, r.Requests)})
	}
	printTable(w, t, 2)
}

// perReq formats x/requests with one decimal, "-" when there were none.
func perReq(x float64, requests int64) string {
	if requests <= 0 || math.IsNaN(x) {
		return "-"
	}
	return fmt.Sprintf("%.1f", x/float64(requests))
}

// writeSched prints the scheduler's view of each median run, per
// request: where the time of several processes goes.
func writeSched(w io.Writer, rep *report) {
	fmt.Fprintf(w, "\nscheduler, median run, per request (/proc/<pid>/task/*/schedstat and status; server = workers or baseline processes; run-wait = runnable but waiting for a CPU; cs = context switches, vol/invol; migr = moves to another CPU):\n")
	t := [][]string{{"workload", "policy", "server µs", "server run-wait µs", "server cs", "server migr", "client µs", "client run-wait µs", "client cs", "master µs", "idle", "steal"}}
	for _, r := range rep.Results {
		sv, cl, ms := r.Sched.Server, r.Sched.Client, r.Sched.Master
		cs := func(x schedSample) string {
			if r.Requests <= 0 {
				return "-"
			}
			return fmt.Sprintf("%.2f/%.2f", float64(x.Vol)/float64(r.Requests), float64(x.Invol)/float64(r.Requests))
		}
		pct := func(v num) string {
			if math.IsNaN(float64(v)) {
				return "-"
			}
			return fmt.Sprintf("%.1f%%", 100*float64(v))
		}
		t = append(t, []string{r.Workload, r.label(),
			perReq(float64(sv.OnCPU)/1e3, r.Requests), perReq(float64(sv.RunWait)/1e3, r.Requests), cs(sv),
			fmt.Sprintf("%.3f", float64(sv.Migr)/float64(max(1, r.Requests))),
			perReq(float64(cl.OnCPU)/1e3, r.Requests), perReq(float64(cl.RunWait)/1e3, r.Requests), cs(cl),
			perReq(float64(ms.OnCPU)/1e3, r.Requests), pct(r.Sched.Idle), pct(r.Sched.Steal)})
	}
	printTable(w, t, 2)
}

// stickiness summarises the per-source counts of a run with -sources.
func stickiness(r *runResult) *stickyJSON {
	if len(r.Load.Sources) == 0 {
		return nil
	}
	slotOf := map[string]int{}
	for _, w := range r.Workers {
		slotOf[strconv.Itoa(w.ID)] = w.Slot
	}
	st := &stickyJSON{ConnsJain: num(Jain(r.connCounts()))}
	slots := 0
	for _, w := range r.Workers {
		slots = max(slots, w.Slot+1)
	}
	st.SourcesPerWorker = make([]int, slots)
	var shares []float64
	for _, src := range r.Load.Sources {
		var total, top int64
		var topKey string
		for k, n := range src.PerWorker {
			total += n
			if n > top || n == top && k < topKey {
				top, topKey = n, k
			}
		}
		if total == 0 {
			continue
		}
		st.Sources++
		if top == total {
			st.OneWorker++
		}
		shares = append(shares, float64(top)/float64(total))
		if s, ok := slotOf[topKey]; ok {
			st.SourcesPerWorker[s]++
		}
	}
	if len(shares) > 0 {
		st.MinShare, st.MedianShare = num(slices.Min(shares)), num(Median(shares))
	} else {
		st.MinShare, st.MedianShare = num(math.NaN()), num(math.NaN())
	}
	return st
}

func writeSticky(w io.Writer, rep *report) {
	var t [][]string
	for _, r := range rep.Results {
		st := r.Sticky
		if st == nil {
			continue
		}
		if t == nil {
			t = [][]string{{"workload", "policy", "sources", "on one worker", "min share", "median share", "sources per worker (by slot)", "jain (conns)"}}
		}
		t = append(t, []string{r.Workload, r.label(), strconv.Itoa(st.Sources),
			fmt.Sprintf("%d (%.1f%%)", st.OneWorker, 100*float64(st.OneWorker)/float64(max(1, st.Sources))),
			fmtFrac(st.MinShare), fmtFrac(st.MedianShare), intsString(st.SourcesPerWorker), fmtFrac(st.ConnsJain)})
	}
	if t == nil {
		return
	}
	fmt.Fprintf(w, "\nclient source addresses, median run (share = a source's connections on its most frequent worker):\n")
	printTable(w, t, 2)
}

// writeBars draws the per-worker requests of each median run as text bars.
func writeBars(w io.Writer, rep *report) {
	const width = 40
	fmt.Fprintf(w, "\nper worker (the median run of each; bar = requests, scaled to the busiest worker):\n")
	for _, r := range rep.Results {
		fmt.Fprintf(w, "\n%s / %s  (rep %d)  jain %s  max/min %s  cv %s  conns jain %s\n", r.Workload, r.label(), r.Rep,
			fmtFrac(r.Jain), fmtRatio(r.MaxMin), fmtFrac(r.CV), fmtFrac(r.ConnsJain))
		if e := r.Expected; e != nil {
			fmt.Fprintf(w, "  binomial expectation for %d connections over %d workers: cv ≈ %s, jain ≈ %s (95%% of random splits ≥ %s)\n",
				e.Connections, r.Workers, fmtFrac(e.CV), fmtFrac(e.Jain), fmtFrac(e.JainP95))
		}
		var top, total int64
		for _, pw := range r.PerWorker {
			top = max(top, pw.Requests)
			total += pw.Requests
		}
		for _, pw := range r.PerWorker {
			share := 0.0
			if total > 0 {
				share = 100 * float64(pw.Requests) / float64(total)
			}
			extra := ""
			if pw.Handed != nil {
				extra = fmt.Sprintf("  handed %d", *pw.Handed)
			}
			if pw.Chosen != nil {
				extra = fmt.Sprintf("  chosen %d", *pw.Chosen)
			}
			fmt.Fprintf(w, "  worker %-3d slot %-2d %-*s %10s %5.1f%%  conns %-7d cpu %.2fs%s\n",
				pw.ID, pw.Slot, width, bar(pw.Requests, top, width), thousands(float64(pw.Requests)), share,
				pw.Connections, float64(pw.CPU), extra)
		}
	}
}

// bar draws v/top of width cells with eighth-cell resolution.
func bar(v, top int64, width int) string {
	if top <= 0 || v <= 0 {
		return ""
	}
	eighths := int(math.Round(float64(v) / float64(top) * float64(width*8)))
	if eighths == 0 {
		eighths = 1 // show that there is something
	}
	partial := []string{"", "▏", "▎", "▍", "▌", "▋", "▊", "▉"}
	return strings.Repeat("█", eighths/8) + partial[eighths%8]
}

func intsString(xs []int) string {
	if len(xs) == 0 {
		return "?"
	}
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

func thousands(f float64) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "-"
	}
	s := strconv.FormatInt(int64(math.Round(f)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, ch := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(ch)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func fmtMs(v num) string {
	f := float64(v)
	switch {
	case math.IsNaN(f) || math.IsInf(f, 0):
		return "-"
	case f < 10:
		return fmt.Sprintf("%.2f", f)
	case f < 100:
		return fmt.Sprintf("%.1f", f)
	}
	return fmt.Sprintf("%.0f", f)
}

func fmtFrac[T ~float64](v T) string {
	f := float64(v)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "-"
	}
	return fmt.Sprintf("%.4f", f)
}

func fmtRatio(v num) string {
	f := float64(v)
	switch {
	case math.IsInf(f, 1):
		return "inf"
	case math.IsNaN(f):
		return "-"
	}
	return fmt.Sprintf("%.3f", f)
}

// printTable prints rows in aligned columns, two spaces apart: the first
// left columns aligned left (names), the others right (figures).
func printTable(w io.Writer, rows [][]string, left int) {
	var widths []int
	for _, row := range rows {
		for i, cell := range row {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(cell))
		}
	}
	for _, row := range rows {
		var b strings.Builder
		for i, cell := range row {
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(cell))
			if i > 0 {
				b.WriteString("  ")
			}
			if i < left {
				b.WriteString(cell + pad)
			} else {
				b.WriteString(pad + cell)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

// label is the policy as asked, with the one that served it after a
// fallback, and the settings that differ between results.
func (r *result) label() string {
	s := r.Policy
	if r.Effective != "" && r.Effective != r.Policy {
		s += "→" + r.Effective
	}
	switch {
	case r.Dispatch != "" && r.Served != "" && r.Served != r.Dispatch:
		s += "/" + r.Dispatch + "→" + r.Served // auto's choice, or a mode the policy does not have
	case r.Dispatch != "":
		s += "/" + r.Dispatch
	case r.Served != "":
		s += "/" + r.Served
	}
	if r.showGMP {
		s += " gmp=" + gmpName(r.GOMAXPROCS)
	}
	if r.showPin {
		if r.Pin {
			s += " pin"
		} else {
			s += " nopin"
		}
	}
	return s
}

// gmpName names a -gomaxprocs setting: lib (0, the library's default),
// go (-1, Go's default) or the number.
func gmpName(n int) string {
	switch n {
	case 0:
		return "lib"
	case -1:
		return "go"
	}
	return strconv.Itoa(n)
}
