package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseNewFlags(t *testing.T) {
	o, err := parseFlags([]string{"-policies", "single,plain,rr", "-pin", "off,on", "-sources", "256", "-workload", "short,churn"})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(o.policies); got != "[single plain rr]" {
		t.Errorf("policies %s", got)
	}
	if !slices.Equal(o.pins, []bool{false, true}) || o.sources != 256 || !slices.Equal(o.workloads, []string{"short", "churn"}) {
		t.Errorf("pins %v sources %d workloads %v", o.pins, o.sources, o.workloads)
	}
	// single runs once per workload and repetition, whatever the other
	// axes; plain and rr under every setting.
	var got []string
	for _, v := range o.variants() {
		got = append(got, fmt.Sprintf("%s/%v", v.Policy, v.Pin))
	}
	if want := "single/false plain/false rr/false plain/true rr/true"; strings.Join(got, " ") != want {
		t.Errorf("variants %q, want %q", strings.Join(got, " "), want)
	}
	// -dispatch is an axis for the dispatching policies only.
	o, err = parseFlags([]string{"-policies", "single,rr,reuseport,leastconn", "-dispatch", "master,KERNEL,master"})
	if err != nil {
		t.Fatal(err)
	}
	got = got[:0]
	for _, v := range o.variants() {
		got = append(got, string(v.Policy)+"/"+v.Dispatch)
	}
	if want := "single/ rr/master reuseport/ leastconn/master rr/kernel leastconn/kernel"; strings.Join(got, " ") != want {
		t.Errorf("variants %q, want %q", strings.Join(got, " "), want)
	}
	if o, err = parseFlags(nil); err != nil || !slices.Equal(o.dispatches, []string{""}) {
		t.Errorf("no -dispatch: %v, %q; want the library's default", err, o.dispatches)
	}
	for _, args := range [][]string{
		{"-dispatch", "bpf"},
		{"-pin", "sometimes"},
		{"-sources", "-1"},
		{"-sources", "100000"},
		{"-policies", "single", "-workload", "udp"},
		{"-sources", "4", "-workload", "udp1"},
	} {
		if _, err := parseFlags(args); err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: error %v, want one line", args, err)
		}
	}
}

func TestSourceIP(t *testing.T) {
	seen := map[string]bool{}
	for i := range maxSources {
		ip := sourceIP(i)
		if !ip.IsLoopback() || ip.To4()[2] == 0 || ip.To4()[3] == 0 || ip.To4()[3] == 255 {
			t.Fatalf("sourceIP(%d) = %v", i, ip)
		}
		if seen[ip.String()] {
			t.Fatalf("sourceIP(%d) = %v again", i, ip)
		}
		seen[ip.String()] = true
	}
}

// TestSourcesBindDistinctAddresses drives a tiny HTTP server that names
// the worker after the client's source address: every source must be
// seen by the server, and each source's connections must come back on
// one "worker".
func TestSourcesBindDistinctAddresses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	remote := map[string]int{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				ip := c.RemoteAddr().(*net.TCPAddr).IP.To4()
				mu.Lock()
				remote[ip.String()]++
				mu.Unlock()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if line == "\r\n" {
						break
					}
				}
				worker := 1 + int(ip[3])%3 // a function of the source address
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nX-Worker: %d\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", worker)
			}()
		}
	}()
	const sources = 7
	res, err := generate(loadConfig{Addr: ln.Addr().String(), Workload: "short", Conns: 4, Duration: 300 * time.Millisecond,
		Timeout: 2 * time.Second, MaxRequests: 2000, Sources: sources})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests < sources {
		t.Fatalf("%d requests", res.Requests)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(remote) != sources {
		t.Errorf("server saw %d source addresses, want %d: %v", len(remote), sources, remote)
	}
	for i := range sources {
		if remote[sourceIP(i).String()] == 0 {
			t.Errorf("no connection from %v", sourceIP(i))
		}
	}
	if len(res.Sources) != sources {
		t.Fatalf("%d sources in the result, want %d", len(res.Sources), sources)
	}
	r := &runResult{Load: *res, Workers: []workerRun{{ID: 1, Slot: 0}, {ID: 2, Slot: 1}, {ID: 3, Slot: 2}}}
	for i, w := range r.Workers {
		r.Workers[i].Connections = res.PerWorker[fmt.Sprint(w.ID)].Connections
	}
	st := stickiness(r)
	if st.Sources != sources || st.OneWorker != sources || st.MinShare != 1 {
		t.Errorf("stickiness %+v, want every source on one worker", *st)
	}
	var n int
	for _, k := range st.SourcesPerWorker {
		n += k
	}
	if n != sources {
		t.Errorf("sources per worker %v add up to %d", st.SourcesPerWorker, n)
	}
}

func TestParseCtxt(t *testing.T) {
	vol, invol := parseCtxt("Name:\tx\nvoluntary_ctxt_switches:\t12\nnonvoluntary_ctxt_switches:\t3\n")
	if vol != 12 || invol != 3 {
		t.Errorf("parseCtxt = %d, %d", vol, invol)
	}
	if s := procSched(0); s.Threads == 0 {
		t.Skip("no /proc/self/task here")
	}
}

// TestBaselines runs single and plain beside reuseport, with -pin, -sources
// and the churn workload, for a short while.
func TestBaselines(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	bin := buildCompare(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-workers", "2", "-policies", "single,plain,reuseport", "-workload", "short,churn",
		"-duration", "500ms", "-reps", "1", "-json", "-c", "8", "-pin", "on", "-sources", "16")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("compare: %v\nstderr:\n%s", err, stderr.String())
	}
	var rep report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, stdout.String())
	}
	if len(rep.Results) != 6 {
		t.Fatalf("%d results, want 6", len(rep.Results))
	}
	for _, r := range rep.Results {
		wantWorkers := 2
		if r.Policy == "single" {
			wantWorkers = 1
		}
		if r.Workers != wantWorkers || r.Requests <= 0 || r.Errors != 0 || r.Unattributed != 0 {
			t.Errorf("%s %s: %d workers, %d requests, %d errors, %d unattributed", r.Workload, r.Policy, r.Workers, r.Requests, r.Errors, r.Unattributed)
		}
		if r.Sticky == nil || r.Sticky.Sources != 16 {
			t.Errorf("%s %s: sticky %+v, want 16 sources", r.Workload, r.Policy, r.Sticky)
		}
		if r.Policy != "single" && !r.Pin {
			t.Errorf("%s %s: not pinned", r.Workload, r.Policy)
		}
		if r.Sched.Server.Threads == 0 {
			t.Errorf("%s %s: no scheduler figures", r.Workload, r.Policy)
		}
		var sum int64
		for _, w := range r.PerWorker {
			sum += w.Requests
		}
		if sum != r.Requests {
			t.Errorf("%s %s: per-worker requests add up to %d of %d", r.Workload, r.Policy, sum, r.Requests)
		}
	}
}

func TestParseSchedField(t *testing.T) {
	text := "go (42, #threads: 5)\n----\nse.exec_start   :   2708172.412531\nse.nr_migrations                             :                   17\nnr_switches : 3\n"
	if got := parseSchedField(text, "se.nr_migrations"); got != 17 {
		t.Errorf("se.nr_migrations = %d, want 17", got)
	}
	if got := parseSchedField(text, "absent"); got != 0 {
		t.Errorf("absent = %d", got)
	}
}
