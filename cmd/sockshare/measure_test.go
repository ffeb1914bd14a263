//go:build linux

package main

import (
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockshare/sockshare/internal/kdispatch"
)

// Settings of TestMeasureForeignWorkers.
const (
	measureClients = 16 // concurrent clients, each one request per connection
	measureSources = 64 // source addresses 127.0.0.2 .. 127.0.0.65
)

// measureRun is what one run of one policy measured.
type measureRun struct {
	v        variant
	rep      int
	reqs     int           // answered requests
	failed   int           // requests that got no valid answer
	elapsed  time.Duration // from the first request until every client stopped
	perID    map[int]int   // answered requests by worker id
	sources  map[int]int   // by worker id, the source addresses it answered
	p50, p99 time.Duration // latency of answered requests, dial to body read
}

func (m measureRun) rate() float64 { return float64(m.reqs) / m.elapsed.Seconds() }

// shareRatio is the busiest worker's count over the idlest's (+Inf when a
// worker answered nothing), and maxShare the busiest worker's share in %.
func (m measureRun) shareRatio() (ratio, maxShare float64) {
	var lo, hi int
	if len(m.perID) < 2 {
		return math.Inf(1), 100
	}
	first := true
	for _, n := range m.perID {
		if first || n < lo {
			lo = n
		}
		if first || n > hi {
			hi = n
		}
		first = false
	}
	if lo == 0 {
		return math.Inf(1), 100
	}
	return float64(hi) / float64(lo), 100 * float64(hi) / float64(m.reqs)
}

// TestMeasureForeignWorkers measures how "sockshare run" spreads a closed
// loop of short connections over two single-threaded Python workers under
// each policy. It is a measurement, not a check: it runs only with
// SOCKSHARE_MEASURE=1 and prints a table of medians for docs/PERFORMANCE.md.
// SOCKSHARE_MEASURE_DURATION (default 3s) is the load of one run,
// SOCKSHARE_MEASURE_REPS (default 3) the repetitions, interleaved across
// the policies (A B C D, A B C D, ...) so that a noisy machine's drift
// falls on all of them alike.
func TestMeasureForeignWorkers(t *testing.T) {
	if os.Getenv("SOCKSHARE_MEASURE") != "1" {
		t.Skip("a measurement, not a test: set SOCKSHARE_MEASURE=1 to run it")
	}
	needCommand(t, pythonKind.cmd[0])
	dur := 3 * time.Second
	if s := os.Getenv("SOCKSHARE_MEASURE_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			t.Fatalf("SOCKSHARE_MEASURE_DURATION=%q: want a positive duration such as 3s", s)
		}
		dur = d
	}
	reps := 3
	if s := os.Getenv("SOCKSHARE_MEASURE_REPS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("SOCKSHARE_MEASURE_REPS=%q: want a positive number", s)
		}
		reps = n
	}
	var variants []variant
	kerr := kdispatch.Probe()
	for _, v := range foreignVariants {
		if v.dispatch == "kernel" && kerr != nil {
			t.Logf("%v left out: kernel dispatch unavailable: %v", v, kerr)
			continue
		}
		variants = append(variants, v)
	}

	loadBefore := loadAvg()
	var runs []measureRun
	for rep := 1; rep <= reps; rep++ {
		for _, v := range variants {
			t.Run(fmt.Sprintf("rep%d/%v", rep, v), func(t *testing.T) {
				r := startRunner(t, runArgs(v, pythonKind, "-ready", "notify")...)
				addr := r.listening(v.policy, 2)
				m := closedLoop(addr, measureClients, dur)
				m.v, m.rep = v, rep
				r.stop()
				ratio, maxShare := m.shareRatio()
				t.Logf("%.0f req/s, %d failed, per worker %v (max/min %.3f, max %.1f%%), source addresses per worker %v, p50 %v p99 %v",
					m.rate(), m.failed, m.perID, ratio, maxShare, m.sources, m.p50, m.p99)
				runs = append(runs, m)
			})
		}
	}
	loadAfter := loadAvg()

	fmt.Print(measureTable(variants, runs, dur, reps))
	fmt.Printf("\n%s; %d CPUs, %s; kernel %s; load average before %s, after %s\n",
		goVersion(), runtime.NumCPU(), cpuModel(), kernelRelease(), loadBefore, loadAfter)
}

// closedLoop runs clients that each make one request per new connection,
// from source addresses spread over 127.0.0.2..127.0.0.65, until dur has
// passed. A request started before the end is waited for (getFrom bounds
// it: 5 s to connect, 15 s to answer).
func closedLoop(addr string, clients int, dur time.Duration) measureRun {
	type clientResult struct {
		perID  map[int]int
		bySrc  map[int]map[int]bool // source index → worker ids that answered it
		lat    []time.Duration
		failed int
	}
	results := make([]clientResult, clients)
	start := time.Now()
	end := start.Add(dur)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := clientResult{perID: map[int]int{}, bySrc: map[int]map[int]bool{}}
			// Client c cycles over the sources c, c+clients, ...: every
			// source makes about the same number of requests, which is
			// what sticky hashes on.
			for i := 0; time.Now().Before(end); i++ {
				src := (c + i*clients) % measureSources
				ip := net.IPv4(127, 0, 0, byte(2+src))
				t0 := time.Now()
				a := getFrom(ip, addr, "/")
				if a.err != nil {
					res.failed++
					continue
				}
				res.lat = append(res.lat, time.Since(t0))
				res.perID[a.worker]++
				if res.bySrc[src] == nil {
					res.bySrc[src] = map[int]bool{}
				}
				res.bySrc[src][a.worker] = true
			}
			results[c] = res
		}()
	}
	wg.Wait()
	m := measureRun{elapsed: time.Since(start), perID: map[int]int{}, sources: map[int]int{}}
	var lat []time.Duration
	for _, r := range results {
		m.failed += r.failed
		lat = append(lat, r.lat...)
		for id, n := range r.perID {
			m.perID[id] += n
		}
		// Each source belongs to one client: no source is counted twice.
		for _, ids := range r.bySrc {
			for id := range ids {
				m.sources[id]++
			}
		}
	}
	m.reqs = len(lat)
	slices.Sort(lat)
	m.p50, m.p99 = quantile(lat, 0.50), quantile(lat, 0.99)
	return m
}

// quantile is the nearest-rank q-quantile of sorted d, 0 when empty.
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(d)))) - 1
	return d[max(0, min(i, len(d)-1))]
}

// stat is a median with the range it came from.
type stat struct{ med, lo, hi float64 }

func statOf(xs []float64) stat {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return stat{med, s[0], s[n-1]}
}

func (s stat) format(f string) string {
	return fmt.Sprintf(f+" ["+f+"–"+f+"]", s.med, s.lo, s.hi)
}

// measureTable is the runs' medians per policy as a Markdown table. The
// ratio to shared is taken repetition by repetition, each run against the
// shared run of its own repetition.
func measureTable(variants []variant, runs []measureRun, dur time.Duration, reps int) string {
	shared := map[int]float64{}
	for _, m := range runs {
		if m.v.policy == "shared" {
			shared[m.rep] = m.rate()
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n%d clients, one request per connection, %v per run, %d repetitions interleaved; median [min–max]\n\n",
		measureClients, dur, reps)
	b.WriteString("| policy | req/s | × shared (by rep) | failed | max/min worker share | max share % | p50 ms | p99 ms |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|\n")
	for _, v := range variants {
		var rate, ratio, failed, share, maxShare, p50, p99 []float64
		for _, m := range runs {
			if m.v != v {
				continue
			}
			rate = append(rate, m.rate())
			if s, ok := shared[m.rep]; ok && s > 0 {
				ratio = append(ratio, m.rate()/s)
			}
			failed = append(failed, float64(m.failed))
			r, mx := m.shareRatio()
			share = append(share, r)
			maxShare = append(maxShare, mx)
			p50 = append(p50, m.p50.Seconds()*1000)
			p99 = append(p99, m.p99.Seconds()*1000)
		}
		if len(rate) == 0 {
			continue
		}
		ratioCol := "–"
		if len(ratio) > 0 {
			ratioCol = statOf(ratio).format("%.2f")
		}
		name := v.String()
		if v.policy == "sticky" {
			name += " (pins each source address)"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", name,
			statOf(rate).format("%.0f"), ratioCol, statOf(failed).format("%.0f"),
			statOf(share).format("%.3f"), statOf(maxShare).format("%.1f"),
			statOf(p50).format("%.2f"), statOf(p99).format("%.2f"))
	}
	return b.String()
}

func goVersion() string {
	if out, err := exec.Command("go", "version").Output(); err == nil {
		return strings.TrimSpace(string(out))
	}
	return runtime.Version() + " (the test binary's)"
}

func cpuModel() string {
	data, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func kernelRelease() string {
	data, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(data))
}

// loadAvg is the 1, 5 and 15 minute load averages.
func loadAvg() string {
	data, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
