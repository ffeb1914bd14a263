package metrics_test

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sockshare/sockshare/cmd/sockshare/internal/metrics"
)

// source is a Source the test changes between requests.
type source struct {
	mu    sync.Mutex
	snap  metrics.Snapshot
	calls int
}

func (s *source) Snapshot() metrics.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	return s.snap
}

func (s *source) set(snap metrics.Snapshot) {
	s.mu.Lock()
	s.snap = snap
	s.mu.Unlock()
}

func serve(t *testing.T, src metrics.Source, log *slog.Logger) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(metrics.New(src, log))
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string) (int, http.Header, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(body)
}

// scrape fetches /metrics and parses it with the client library's own text
// parser.
func scrape(t *testing.T, srv *httptest.Server) map[string]*dto.MetricFamily {
	t.Helper()
	code, hdr, body := get(t, srv.URL+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d\n%s", code, body)
	}
	if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("GET /metrics: Content-Type %q, want the text format", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return mfs
}

// series returns a family's samples as "label=value,label=value" → value,
// and fails when the family is missing or not of the type wanted.
func series(t *testing.T, mfs map[string]*dto.MetricFamily, name string, typ dto.MetricType) map[string]float64 {
	t.Helper()
	mf, ok := mfs[name]
	if !ok {
		t.Fatalf("no %s in the scrape", name)
	}
	if mf.GetType() != typ {
		t.Errorf("%s is a %v, want %v", name, mf.GetType(), typ)
	}
	out := map[string]float64{}
	for _, m := range mf.GetMetric() {
		var labels []string
		for _, lp := range m.GetLabel() {
			labels = append(labels, lp.GetName()+"="+lp.GetValue())
		}
		sort.Strings(labels)
		var v float64
		switch typ {
		case dto.MetricType_COUNTER:
			v = m.GetCounter().GetValue()
		default:
			v = m.GetGauge().GetValue()
		}
		out[strings.Join(labels, ",")] = v
	}
	return out
}

func TestMetrics(t *testing.T) {
	src := &source{snap: metrics.Snapshot{
		Ready: true,
		Workers: []metrics.Worker{
			{ID: 1, Slot: 0, PID: 101, State: metrics.StateReady},
			{ID: 5, Slot: 1, PID: 105, State: metrics.StateReady},
			{ID: 6, Slot: 0, PID: 106, State: metrics.StateStarting}, // reloading slot 0
			{ID: 7, Slot: 2, PID: 107, State: "crashed"},
		},
		Slots:   []metrics.Slot{{Slot: 0}, {Slot: 1, Restarts: 3}, {Slot: 2, Restarts: 1}},
		Reloads: 2,
		Listeners: []metrics.Listener{
			{Name: "tcp://127.0.0.1:8080", Policy: "rr", Dispatch: "master", Connections: []uint64{10, 11, 9}, Pending: 4},
			{Name: "udp://127.0.0.1:5353", Policy: "shared"},
		},
	}}
	srv := serve(t, src, nil)
	mfs := scrape(t, srv)

	checks := []struct {
		name string
		typ  dto.MetricType
		want map[string]float64
	}{
		{"sockshare_ready", dto.MetricType_GAUGE, map[string]float64{"": 1}},
		{"sockshare_workers", dto.MetricType_GAUGE, map[string]float64{
			"state=starting": 1, "state=ready": 2, "state=stopping": 0, "state=crashed": 1,
		}},
		{"sockshare_slots", dto.MetricType_GAUGE, map[string]float64{"": 3}},
		{"sockshare_worker_restarts_total", dto.MetricType_COUNTER, map[string]float64{
			"slot=0": 0, "slot=1": 3, "slot=2": 1,
		}},
		{"sockshare_reloads_total", dto.MetricType_COUNTER, map[string]float64{"": 2}},
		{"sockshare_listener_info", dto.MetricType_GAUGE, map[string]float64{
			"dispatch=master,listener=tcp://127.0.0.1:8080,policy=rr": 1,
			"dispatch=,listener=udp://127.0.0.1:5353,policy=shared":   1,
		}},
		{"sockshare_connections_total", dto.MetricType_COUNTER, map[string]float64{
			"listener=tcp://127.0.0.1:8080,slot=0": 10,
			"listener=tcp://127.0.0.1:8080,slot=1": 11,
			"listener=tcp://127.0.0.1:8080,slot=2": 9,
		}},
		{"sockshare_pending_connections", dto.MetricType_GAUGE, map[string]float64{
			"listener=tcp://127.0.0.1:8080": 4,
			"listener=udp://127.0.0.1:5353": 0,
		}},
	}
	for _, c := range checks {
		if diff := cmp.Diff(c.want, series(t, mfs, c.name, c.typ)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", c.name, diff)
		}
	}
	// The runner's own process and runtime, from the standard collectors.
	for _, name := range []string{"go_goroutines", "go_info", "process_start_time_seconds"} {
		if _, ok := mfs[name]; !ok {
			t.Errorf("no %s in the scrape", name)
		}
	}
}

func TestMetricsReadAtScrapeTime(t *testing.T) {
	src := &source{}
	srv := serve(t, src, nil)

	mfs := scrape(t, srv)
	want := map[string]float64{"state=starting": 0, "state=ready": 0, "state=stopping": 0}
	if diff := cmp.Diff(want, series(t, mfs, "sockshare_workers", dto.MetricType_GAUGE)); diff != "" {
		t.Errorf("empty snapshot: sockshare_workers (-want +got):\n%s", diff)
	}
	if got := series(t, mfs, "sockshare_ready", dto.MetricType_GAUGE)[""]; got != 0 {
		t.Errorf("empty snapshot: sockshare_ready = %v, want 0", got)
	}
	for _, name := range []string{"sockshare_connections_total", "sockshare_worker_restarts_total", "sockshare_pending_connections"} {
		if _, ok := mfs[name]; ok {
			t.Errorf("empty snapshot: %s has series", name)
		}
	}

	src.set(metrics.Snapshot{
		Ready:   true,
		Workers: []metrics.Worker{{ID: 1, State: metrics.StateStopping}, {ID: 2, Slot: 1, State: metrics.StateReady}},
		Slots:   []metrics.Slot{{Slot: 0, Restarts: 7}, {Slot: 1}},
		Reloads: 1,
	})
	mfs = scrape(t, srv)
	want = map[string]float64{"state=starting": 0, "state=ready": 1, "state=stopping": 1}
	if diff := cmp.Diff(want, series(t, mfs, "sockshare_workers", dto.MetricType_GAUGE)); diff != "" {
		t.Errorf("after the change: sockshare_workers (-want +got):\n%s", diff)
	}
	if got := series(t, mfs, "sockshare_worker_restarts_total", dto.MetricType_COUNTER)["slot=0"]; got != 7 {
		t.Errorf("after the change: restarts of slot 0 = %v, want 7", got)
	}
	if got := series(t, mfs, "sockshare_reloads_total", dto.MetricType_COUNTER)[""]; got != 1 {
		t.Errorf("after the change: sockshare_reloads_total = %v, want 1", got)
	}
}

func TestMetricsStates(t *testing.T) {
	src := &source{snap: metrics.Snapshot{
		States:  []string{"online", "listening"},
		Workers: []metrics.Worker{{ID: 1, State: "listening"}, {ID: 2, State: ""}},
	}}
	mfs := scrape(t, serve(t, src, nil))
	want := map[string]float64{"state=online": 0, "state=listening": 1, "state=unknown": 1}
	if diff := cmp.Diff(want, series(t, mfs, "sockshare_workers", dto.MetricType_GAUGE)); diff != "" {
		t.Errorf("sockshare_workers (-want +got):\n%s", diff)
	}
}

func TestMetricsBadSnapshotServesTheRest(t *testing.T) {
	var logBuf syncBuffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	src := &source{snap: metrics.Snapshot{
		Ready: true,
		Slots: []metrics.Slot{{Slot: 0, Restarts: 1}, {Slot: 0, Restarts: 2}}, // one slot twice
	}}
	mfs := scrape(t, serve(t, src, log))
	if got := series(t, mfs, "sockshare_ready", dto.MetricType_GAUGE)[""]; got != 1 {
		t.Errorf("sockshare_ready = %v, want 1 despite the duplicate slot", got)
	}
	if !strings.Contains(logBuf.String(), "sockshare_worker_restarts_total") {
		t.Errorf("the duplicate series was not logged; log:\n%s", logBuf.String())
	}
}

func TestHealthz(t *testing.T) {
	src := &source{}
	srv := serve(t, src, nil)

	code, _, body := get(t, srv.URL+"/healthz")
	if code != http.StatusServiceUnavailable || body != "not ready\n" {
		t.Errorf("not ready: GET /healthz = %d %q, want 503 \"not ready\\n\"", code, body)
	}
	src.set(metrics.Snapshot{Ready: true})
	code, hdr, body := get(t, srv.URL+"/healthz")
	if code != http.StatusOK || body != "ok\n" {
		t.Errorf("ready: GET /healthz = %d %q, want 200 \"ok\\n\"", code, body)
	}
	if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("ready: Content-Type %q", ct)
	}
	src.set(metrics.Snapshot{Ready: false})
	if code, _, _ := get(t, srv.URL+"/healthz"); code != http.StatusServiceUnavailable {
		t.Errorf("no longer ready: GET /healthz = %d, want 503", code)
	}
}

func TestOtherPaths(t *testing.T) {
	srv := serve(t, &source{}, nil)
	for _, p := range []string{"/", "/metricsx", "/debug/pprof/"} {
		if code, _, _ := get(t, srv.URL+p); code != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", p, code)
		}
	}
}

func TestGlobalRegistryUntouched(t *testing.T) {
	a := serve(t, &source{}, nil)
	b := serve(t, &source{}, nil) // a second Exporter must not collide
	scrape(t, a)
	scrape(t, b)
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "sockshare_") {
			t.Errorf("%s is in the global registry", mf.GetName())
		}
	}
}

func TestConcurrentScrapes(t *testing.T) {
	src := &source{}
	srv := serve(t, src, nil)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 10 {
				src.set(metrics.Snapshot{Ready: j%2 == 0, Reloads: uint64(i*10 + j),
					Slots: []metrics.Slot{{Slot: 0, Restarts: uint64(j)}}})
				resp, err := http.Get(srv.URL + []string{"/metrics", "/healthz"}[j%2])
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
}

func TestSourceFunc(t *testing.T) {
	srv := serve(t, metrics.SourceFunc(func() metrics.Snapshot { return metrics.Snapshot{Ready: true} }), nil)
	if code, _, _ := get(t, srv.URL+"/healthz"); code != http.StatusOK {
		t.Errorf("GET /healthz = %d, want 200", code)
	}
}

// syncBuffer is a bytes.Buffer the HTTP server's goroutine writes and the
// test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
