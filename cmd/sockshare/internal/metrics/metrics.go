package metrics

import (
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Worker states reported even when no worker is in them, unless
// Snapshot.States says otherwise.
const (
	StateStarting = "starting" // started, not yet ready
	StateReady    = "ready"    // ready (see the runner's -ready)
	StateStopping = "stopping" // asked to stop, not yet exited
)

// DefaultStates is used when Snapshot.States is nil.
var DefaultStates = []string{StateStarting, StateReady, StateStopping}

// Worker is one running worker process.
type Worker struct {
	ID    int
	Slot  int
	PID   int
	State string // one of Snapshot.States, or any other word; "" counts as "unknown"
}

// Slot is one worker slot. Restarts belongs to the slot, not to a worker:
// the count must stay visible while the slot waits, with no process, to
// restart its crashed worker.
type Slot struct {
	Slot     int    // 0..N-1; distinct within a Snapshot
	Restarts uint64 // times the slot's worker was started again after it died
}

// Listener is one shared address.
type Listener struct {
	// Name labels the address in every metric, for example
	// "tcp://127.0.0.1:8080". Distinct within a Snapshot.
	Name     string
	Policy   string // the policy that serves it, for example "rr"
	Dispatch string // "master", "kernel", or "" when workers accept themselves
	// Connections counts, per slot (index = slot), the connections (or
	// datagrams) sent to that slot since the runner started, as the
	// master or the kernel's program counts them; nil when nobody counts
	// them (shared, reuseport), and then the listener has no
	// sockshare_connections_total series.
	Connections []uint64
	// Pending is the number of connections the master holds for this
	// address that no worker has taken yet.
	Pending int
}

// Snapshot is the runner's state at one instant.
type Snapshot struct {
	Ready     bool // /healthz answers 200 and sockshare_ready is 1
	Workers   []Worker
	Slots     []Slot
	Listeners []Listener
	Reloads   uint64 // rolling reloads started (SIGHUP) since the runner started
	// States are the worker states always reported, 0 when no worker is
	// in them; nil means DefaultStates. A worker in another state adds
	// that state.
	States []string
}

// Source gives the Exporter a Snapshot. Snapshot is called on the HTTP
// server's goroutines, once per /metrics or /healthz request and possibly
// from several at once: it must be safe for concurrent use, return quickly,
// and not keep or modify the slices after returning them.
type Source interface {
	Snapshot() Snapshot
}

// SourceFunc adapts a function to a Source.
type SourceFunc func() Snapshot

// Snapshot calls f.
func (f SourceFunc) Snapshot() Snapshot { return f() }

// Exporter is the http.Handler of /metrics and /healthz. Other paths are
// 404. Its registry is its own; several Exporters can live in one process.
type Exporter struct {
	src Source
	mux *http.ServeMux
}

// New returns an Exporter that reads src at every request. Errors while
// gathering (for example two Listeners with one name) are logged on log
// (nil: silent) and the scrape serves every other metric.
func New(src Source, log *slog.Logger) *Exporter {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		&collector{src: src},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	opts := promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}
	if log != nil {
		opts.ErrorLog = slogPrinter{log}
	}
	e := &Exporter{src: src, mux: http.NewServeMux()}
	e.mux.Handle("/metrics", promhttp.HandlerFor(reg, opts))
	e.mux.HandleFunc("/healthz", e.healthz)
	return e
}

// ServeHTTP serves /metrics and /healthz.
func (e *Exporter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.mux.ServeHTTP(w, r)
}

// healthz answers 200 "ok" when the runner is ready, 503 "not ready"
// otherwise, so a load balancer or an orchestrator's probe can wait for the
// workers.
func (e *Exporter) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if e.src.Snapshot().Ready {
		w.WriteHeader(http.StatusOK)
		fmt.Fprintln(w, "ok")
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	fmt.Fprintln(w, "not ready")
}

var (
	descReady = prometheus.NewDesc("sockshare_ready",
		"1 when the runner is ready (as /healthz says), else 0.", nil, nil)
	descWorkers = prometheus.NewDesc("sockshare_workers",
		"Worker processes by state.", []string{"state"}, nil)
	descSlots = prometheus.NewDesc("sockshare_slots",
		"Worker slots (the number of workers asked for).", nil, nil)
	descRestarts = prometheus.NewDesc("sockshare_worker_restarts_total",
		"Times each slot's worker was started again after it died.", []string{"slot"}, nil)
	descReloads = prometheus.NewDesc("sockshare_reloads_total",
		"Rolling reloads started.", nil, nil)
	descListener = prometheus.NewDesc("sockshare_listener_info",
		"One series per shared address, with its policy and dispatch.", []string{"listener", "policy", "dispatch"}, nil)
	descConns = prometheus.NewDesc("sockshare_connections_total",
		"Connections (datagrams for udp) sent to each slot, where the master or the kernel counts them.", []string{"listener", "slot"}, nil)
	descPending = prometheus.NewDesc("sockshare_pending_connections",
		"Connections the master holds that no worker has taken yet.", []string{"listener"}, nil)
)

// collector turns one Snapshot per scrape into constant metrics.
type collector struct {
	src Source
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descReady, descWorkers, descSlots, descRestarts, descReloads, descListener, descConns, descPending} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.Snapshot()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}

	gauge(descReady, boolFloat(s.Ready))

	states := s.States
	if states == nil {
		states = DefaultStates
	}
	count := make(map[string]int, len(states))
	for _, st := range states {
		count[st] = 0
	}
	for _, w := range s.Workers {
		st := w.State
		if st == "" {
			st = "unknown"
		}
		count[st]++
	}
	for _, st := range slices.Sorted(maps.Keys(count)) {
		gauge(descWorkers, float64(count[st]), st)
	}

	gauge(descSlots, float64(len(s.Slots)))
	for _, sl := range s.Slots {
		counter(descRestarts, sl.Restarts, strconv.Itoa(sl.Slot))
	}
	counter(descReloads, s.Reloads)

	for _, l := range s.Listeners {
		gauge(descListener, 1, l.Name, l.Policy, l.Dispatch)
		for slot, n := range l.Connections {
			counter(descConns, n, l.Name, strconv.Itoa(slot))
		}
		gauge(descPending, float64(l.Pending), l.Name)
	}
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// slogPrinter adapts a *slog.Logger to promhttp's ErrorLog.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) {
	p.log.Warn("metrics: " + strings.TrimSuffix(fmt.Sprintln(v...), "\n"))
}
