//go:build linux

package main

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/sockshare/sockshare/cmd/sockshare/internal/sdnotify"
)

var reuseport = variant{"reuseport", ""}

// /metrics follows the runner: two ready workers, a restart counted on the
// slot whose worker crashed, a reload counted after SIGHUP.
func TestMetrics(t *testing.T) {
	t.Parallel()
	needCommand(t, "python3")
	r := startRunner(t, runArgs(reuseport, pythonKind, "-metrics", "127.0.0.1:0")...)
	url := r.metricsURL()
	addr := r.listening("reuseport", 2)

	if code := status(t, healthzURL(url)); code != http.StatusOK {
		t.Errorf("/healthz %d once ready, want 200", code)
	}
	mfs := scrape(t, url)
	want(t, mfs, "sockshare_workers", 2, "state", "ready")
	want(t, mfs, "sockshare_workers", 0, "state", "starting")
	want(t, mfs, "sockshare_slots", 2)
	want(t, mfs, "sockshare_ready", 1)
	want(t, mfs, "sockshare_reloads_total", 0)
	want(t, mfs, "sockshare_worker_restarts_total", 0, "slot", "0")
	want(t, mfs, "sockshare_worker_restarts_total", 0, "slot", "1")

	// GET /exit/1 answers, then the worker exits with status 1.
	crashed := get(addr, "/exit/1")
	if crashed.err != nil {
		t.Fatalf("GET /exit/1: %v", crashed.err)
	}
	slot, other := strconv.Itoa(crashed.slot), strconv.Itoa(1-crashed.slot)
	eventually(t, 30*time.Second, "slot "+slot+" restarted and ready", func() (bool, string) {
		mfs := scrape(t, url)
		restarts, _ := value(mfs, "sockshare_worker_restarts_total", "slot", slot)
		ready, _ := value(mfs, "sockshare_workers", "state", "ready")
		return restarts == 1 && ready == 2, fmt.Sprintf("restarts %v, ready %v", restarts, ready)
	})
	mfs = scrape(t, url)
	want(t, mfs, "sockshare_worker_restarts_total", 0, "slot", other)
	per, errs := byWorker(requests(addr, 40, 4))
	if len(errs) > 0 || per[crashed.worker] > 0 {
		t.Errorf("after the restart: answers per worker %v, errors %v; want none from the crashed worker %d", per, errs, crashed.worker)
	}

	r.signal(syscall.SIGHUP)
	if m := r.waitLine(r.stderr, reloadRE, 30*time.Second); m[1] != "done" {
		t.Fatalf("reload failed")
	}
	mfs = scrape(t, url)
	want(t, mfs, "sockshare_reloads_total", 1)
	want(t, mfs, "sockshare_workers", 2, "state", "ready")
	want(t, mfs, "sockshare_workers", 0, "state", "stopping")
	r.stop()
}

// /healthz is 503 while no worker is ready, 200 once one is.
func TestHealthz(t *testing.T) {
	t.Parallel()
	needCommand(t, "python3")
	// The delay starts when a worker starts, after the metrics server
	// is up and its address logged.
	r := startRunner(t, runArgs(reuseport, workerKind{"python", pythonWorker, []string{"-ready", "delay:3s"}},
		"-metrics", "127.0.0.1:0")...)
	url := r.metricsURL()
	if code := status(t, healthzURL(url)); code != http.StatusServiceUnavailable {
		t.Errorf("/healthz %d before any worker is ready, want 503", code)
	}
	mfs := scrape(t, url)
	want(t, mfs, "sockshare_ready", 0)
	want(t, mfs, "sockshare_workers", 0, "state", "ready")
	r.listening("reuseport", 2)
	if code := status(t, healthzURL(url)); code != http.StatusOK {
		t.Errorf("/healthz %d once ready, want 200", code)
	}
	want(t, scrape(t, url), "sockshare_workers", 2, "state", "ready")
	r.stop()
}

// SIGTTIN adds a worker, SIGTTOU removes one: the slots, the ready
// workers and the workers answering follow.
func TestScaleSignals(t *testing.T) {
	t.Parallel()
	needCommand(t, "python3")
	rc, err := sdnotify.Listen("scale-test")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	r := startRunnerWith(t, runOpts{env: []string{sdnotify.EnvNotifySocket + "=" + rc.Addr()}},
		runArgs(reuseport, pythonKind, "-metrics", "127.0.0.1:0")...)
	rc.Expect(r.pid())
	url := r.metricsURL()
	addr := r.listening("reuseport", 2)
	nextMessage(t, rc, func(m sdnotify.Message) bool { return m.Ready })

	// The runner reports the new count once the master has scaled.
	r.signal(syscall.SIGTTIN)
	nextMessage(t, rc, func(m sdnotify.Message) bool { return strings.HasPrefix(m.Status, "3 workers") })
	eventually(t, 30*time.Second, "3 ready workers", func() (bool, string) {
		mfs := scrape(t, url)
		slots, _ := value(mfs, "sockshare_slots")
		ready, _ := value(mfs, "sockshare_workers", "state", "ready")
		return slots == 3 && ready == 3, fmt.Sprintf("slots %v, ready %v", slots, ready)
	})
	per, errs := byWorker(requests(addr, 90, 4))
	if len(errs) > 0 || len(per) != 3 {
		t.Fatalf("3 workers: answers per worker %v, %d errors %v; want 3 workers, no error", per, len(errs), errs)
	}

	r.signal(syscall.SIGTTOU)
	nextMessage(t, rc, func(m sdnotify.Message) bool { return strings.HasPrefix(m.Status, "2 workers") })
	mfs := scrape(t, url)
	want(t, mfs, "sockshare_slots", 2)
	want(t, mfs, "sockshare_workers", 2, "state", "ready")
	want(t, mfs, "sockshare_workers", 0, "state", "stopping")
	as := requests(addr, 60, 4)
	per, errs = byWorker(as)
	if len(errs) > 0 || len(per) != 2 {
		t.Fatalf("2 workers: answers per worker %v, %d errors %v; want 2 workers, no error", per, len(errs), errs)
	}
	for _, a := range as {
		if a.slot > 1 {
			t.Fatalf("worker %d of removed slot %d answered", a.worker, a.slot)
		}
	}
	r.stop()
}

// nextMessage waits for the runner's next sd_notify message and fails
// the test unless match accepts it.
func nextMessage(t *testing.T, rc *sdnotify.Receiver, match func(sdnotify.Message) bool) sdnotify.Message {
	t.Helper()
	select {
	case m, ok := <-rc.Messages():
		if !ok {
			t.Fatalf("notify socket closed")
		}
		if !match(m) {
			t.Fatalf("unexpected sd_notify message %v", m.Fields)
		}
		return m
	case <-time.After(startTimeout):
		t.Fatalf("no sd_notify message within %v", startTimeout)
	}
	return sdnotify.Message{}
}

func healthzURL(metricsURL string) string {
	return strings.TrimSuffix(metricsURL, "/metrics") + "/healthz"
}

func status(t *testing.T, url string) int {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// want checks the value of a series, which must exist.
func want(t *testing.T, mfs map[string]*dto.MetricFamily, name string, v float64, labels ...string) {
	t.Helper()
	got, ok := value(mfs, name, labels...)
	switch {
	case !ok:
		t.Errorf("%s%v: no such series", name, labels)
	case got != v:
		t.Errorf("%s%v = %v, want %v", name, labels, got, v)
	}
}
