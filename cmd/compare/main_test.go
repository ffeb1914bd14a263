package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// buildCompare builds this command into a temporary directory: the
// workers and the load generator are the binary re-run, so the test runs
// the real thing rather than the test binary.
func buildCompare(t *testing.T) string {
	t.Helper()
	gotool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool in PATH")
	}
	bin := filepath.Join(t.TempDir(), "compare")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, gotool, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real masters and drives them for a second each")
	}
	bin := buildCompare(t)

	t.Run("json", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "-workers", "2", "-policies", "rr,reuseport", "-workload", "short",
			"-duration", "1s", "-reps", "1", "-json", "-c", "8")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("compare: %v\nstderr:\n%s", err, stderr.String())
		}
		if stderr.Len() > 0 {
			t.Errorf("stderr is not a terminal, yet compare wrote:\n%s", stderr.String())
		}
		var doc map[string]any
		if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, stdout.String())
		}
		mach, ok := doc["machine"].(map[string]any)
		if !ok {
			t.Fatalf("no machine object in %s", stdout.String())
		}
		for _, k := range []string{"kernel", "nproc", "go", "somaxconn", "tcp_migrate_req"} {
			if _, ok := mach[k]; !ok {
				t.Errorf("machine.%s missing", k)
			}
		}
		results, _ := doc["results"].([]any)
		if len(results) != 2 {
			t.Fatalf("want 2 results (rr, reuseport), got %d", len(results))
		}
		seen := map[string]bool{}
		for _, x := range results {
			r := x.(map[string]any)
			for _, k := range []string{"policy", "workload", "workers", "requests", "errors", "errors_by_kind", "rps", "p50_ms", "p99_ms", "per_worker", "jain", "max_min", "cv"} {
				if _, ok := r[k]; !ok {
					t.Errorf("result field %q missing", k)
				}
			}
			pol, _ := r["policy"].(string)
			seen[pol] = true
			if r["workload"] != "short" || r["workers"] != 2.0 {
				t.Errorf("%s: workload %v workers %v", pol, r["workload"], r["workers"])
			}
			requests, _ := r["requests"].(float64)
			if requests <= 0 {
				t.Errorf("%s: requests = %v, want > 0", pol, r["requests"])
			}
			if rps, _ := r["rps"].(float64); rps <= 0 {
				t.Errorf("%s: rps = %v", pol, r["rps"])
			}
			pw, _ := r["per_worker"].([]any)
			if len(pw) != 2 {
				t.Fatalf("%s: per_worker has %d entries, want 2", pol, len(pw))
			}
			var sum, sq float64
			for _, y := range pw {
				w := y.(map[string]any)
				for _, k := range []string{"id", "requests", "connections", "cpu_s"} {
					if _, ok := w[k]; !ok {
						t.Errorf("%s: per_worker field %q missing", pol, k)
					}
				}
				n := w["requests"].(float64)
				sum += n
				sq += n * n
				// One request per connection in the short workload.
				if w["connections"] != w["requests"] {
					t.Errorf("%s: worker %v: %v connections for %v requests", pol, w["id"], w["connections"], w["requests"])
				}
			}
			if sum != requests {
				t.Errorf("%s: per-worker requests add up to %v, total is %v", pol, sum, requests)
			}
			want := sum * sum / (2 * sq)
			if jain, _ := r["jain"].(float64); math.Abs(jain-want) > 1e-9 {
				t.Errorf("%s: jain %v, recomputed from per_worker %v", pol, jain, want)
			}
		}
		if !seen["rr"] || !seen["reuseport"] {
			t.Errorf("policies in the output: %v", seen)
		}
	})

	t.Run("bad flags", func(t *testing.T) {
		for _, args := range [][]string{
			{"-policies", "rr,random"},
			{"-workload", "huge"},
			{"-workers", "0"},
			{"-c", "0"},
			{"-reps", "0"},
			{"-duration", "soon"},
			{"-duration", "-1s"},
			{"-gomaxprocs", "-2"},
			{"-no-such-flag"},
		} {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			cmd := exec.CommandContext(ctx, bin, args...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			cancel()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Errorf("%v: %v, want exit status 2", args, err)
			}
			msg := stderr.String()
			if !strings.HasSuffix(msg, "\n") || strings.Count(msg, "\n") != 1 || !strings.HasPrefix(msg, "compare: ") {
				t.Errorf("%v: stderr %q, want one line", args, msg)
			}
			if stdout.Len() > 0 {
				t.Errorf("%v: stdout %q, want nothing", args, stdout.String())
			}
		}
		// policy.Parse's own message, which lists the valid names.
		out, _ := exec.Command(bin, "-policies", "random").CombinedOutput()
		if want := `unknown policy "random" (valid: shared, rr, leastconn, reuseport`; !strings.Contains(string(out), want) {
			t.Errorf("unknown policy: %q, want it to contain %q", out, want)
		}
	})
}

func TestParseProcStat(t *testing.T) {
	// A command name may hold spaces and parentheses; fields count from
	// the last ')'. utime 250 + stime 50 ticks = 3s.
	line := "4242 (we (ird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 100 1000 200\n"
	got, err := parseProcStat(line)
	if err != nil || got != 3*time.Second {
		t.Errorf("parseProcStat = %v, %v; want 3s", got, err)
	}
	if _, err := parseProcStat("garbage"); err == nil {
		t.Error("parseProcStat(garbage) succeeded")
	}
}

func TestReadResponse(t *testing.T) {
	server, clientEnd := net.Pipe()
	defer server.Close()
	defer clientEnd.Close()
	// Two responses, the second split across writes, with headers in
	// another case and a body that does not fit the first read.
	body := strings.Repeat("x", 5000)
	go func() {
		server.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nx-worker: 7\r\n\r\nhello"))
		server.Write([]byte("HTTP/1.1 503 Service Unavailable\r\nX-WORKER:  12 \r\n"))
		server.Write([]byte("content-length: 5000\r\n\r\n" + body[:100]))
		server.Write([]byte(body[100:]))
		server.Write([]byte("HTTP/1.1 200 OK\r\nX-Worker: 3\r\n\r\n")) // no Content-Length
	}()
	c := &client{conn: clientEnd, buf: make([]byte, 4096)}
	for _, want := range []struct{ status, worker int }{{200, 7}, {503, 12}} {
		status, worker, err := c.readResponse()
		if err != nil || status != want.status || worker != want.worker {
			t.Fatalf("readResponse = %d, %d, %v; want %d, %d", status, worker, err, want.status, want.worker)
		}
	}
	if _, _, err := c.readResponse(); !errors.Is(err, errMalformed) {
		t.Errorf("response without Content-Length: %v, want errMalformed", err)
	}
}

func TestClassify(t *testing.T) {
	_, err := net.DialTimeout("tcp", "127.0.0.1:1", time.Second) // nothing listens on port 1
	if err != nil && classify(err) != errRefused {
		t.Errorf("classify(%v) = %s, want refused", err, errKindNames[classify(err)])
	}
	if got := classify(errors.New("x")); got != errOther {
		t.Errorf("classify(other) = %s", errKindNames[got])
	}
}
