package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// machine is the header of a report: what a reader needs to know before
// comparing figures from two machines (mostly: don't).
type machine struct {
	Date          string `json:"date"`
	Kernel        string `json:"kernel"`
	NProc         int    `json:"nproc"`
	CPUModel      string `json:"cpu_model,omitempty"`
	Go            string `json:"go"`
	Somaxconn     string `json:"somaxconn"`
	TCPMigrateReq string `json:"tcp_migrate_req"`
	TCPTwReuse    string `json:"tcp_tw_reuse"`
	PortRange     string `json:"ip_local_port_range"`
	LoadBefore    string `json:"loadavg_before"`
	LoadAfter     string `json:"loadavg_after"`
	WorkerProcs   []int  `json:"worker_gomaxprocs"` // as the workers reported it
	ClientProcs   int    `json:"client_gomaxprocs"`
}

func readMachine() *machine {
	m := &machine{
		Date:          time.Now().Format(time.RFC3339),
		Kernel:        procValue("/proc/sys/kernel/osrelease"), // what uname -r prints
		NProc:         runtime.NumCPU(),
		CPUModel:      cpuModel(),
		Go:            runtime.Version(),
		Somaxconn:     procValue("/proc/sys/net/core/somaxconn"),
		TCPMigrateReq: procValue("/proc/sys/net/ipv4/tcp_migrate_req"),
		TCPTwReuse:    procValue("/proc/sys/net/ipv4/tcp_tw_reuse"),
		PortRange:     strings.Join(strings.Fields(procValue("/proc/sys/net/ipv4/ip_local_port_range")), "-"),
		LoadBefore:    loadavg(),
		ClientProcs:   clientProcs(), // the load generator inherits our environment, not -master-gomaxprocs
	}
	return m
}

func (m *machine) finish(runs []*runResult) {
	m.LoadAfter = loadavg()
	seen := map[int]bool{}
	for _, r := range runs {
		for _, n := range r.MaxProcs {
			if !seen[n] {
				seen[n] = true
				m.WorkerProcs = append(m.WorkerProcs, n)
			}
		}
	}
}

func procValue(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "n/a"
	}
	return strings.TrimSpace(string(b))
}

func loadavg() string {
	f := strings.Fields(procValue("/proc/loadavg"))
	if len(f) < 3 {
		return "n/a"
	}
	return strings.Join(f[:3], " ")
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// progress reports each run on one rewritten line of stderr, only when
// stderr is a terminal.
type progress struct {
	w     io.Writer
	on    bool
	n, of int
}

func newProgress(w io.Writer, total int) *progress {
	p := &progress{w: w, of: total}
	if f, ok := w.(*os.File); ok {
		p.on = isTerminal(f.Fd())
	}
	return p
}

func (p *progress) start(rep, reps int, workload string, v variant) {
	p.n++
	if p.on {
		fmt.Fprintf(p.w, "\r\033[K[%d/%d] rep %d/%d %s %s gomaxprocs=%s pin=%v ...", p.n, p.of, rep, reps, workload, v.Policy, gmpName(v.GMP), v.Pin)
	}
}

func (p *progress) done(r *runResult) {
	if p.on {
		fmt.Fprintf(p.w, " %.0f req/s, jain %.4f", r.rps(), Jain(r.requestCounts()))
	}
}

func (p *progress) clear() {
	if p.on {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

// clientProcs is the GOMAXPROCS the load generator runs with: the
// environment's, else the number of CPUs (as the Go runtime decides).
func clientProcs() int {
	if n, err := strconv.Atoi(os.Getenv("GOMAXPROCS")); err == nil && n > 0 {
		return n
	}
	return runtime.NumCPU()
}
