package main

// Scheduler figures from /proc, for "what isolation costs": where the CPU
// of N processes goes that one process does not spend. Every reader
// returns zero values where /proc has no such file (other systems, or a
// kernel without schedstats), so the report shows "-" rather than failing.

import (
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// schedSample is one process's scheduler counters, summed over its threads.
type schedSample struct {
	OnCPU   time.Duration `json:"on_cpu"`   // schedstat field 1: time spent running
	RunWait time.Duration `json:"run_wait"` // schedstat field 2: time runnable but waiting for a CPU
	Slices  int64         `json:"slices"`   // schedstat field 3: times it was scheduled in
	Vol     int64         `json:"voluntary_ctxt_switches"`
	Invol   int64         `json:"nonvoluntary_ctxt_switches"`
	Migr    int64         `json:"migrations"` // se.nr_migrations of /proc/<pid>/task/*/sched: moves to another CPU
	Threads int           `json:"threads"`
}

func (s schedSample) sub(b schedSample) schedSample {
	return schedSample{
		OnCPU: s.OnCPU - b.OnCPU, RunWait: s.RunWait - b.RunWait, Slices: s.Slices - b.Slices,
		Vol: s.Vol - b.Vol, Invol: s.Invol - b.Invol, Migr: s.Migr - b.Migr, Threads: s.Threads,
	}
}

func (s schedSample) add(b schedSample) schedSample {
	return schedSample{
		OnCPU: s.OnCPU + b.OnCPU, RunWait: s.RunWait + b.RunWait, Slices: s.Slices + b.Slices,
		Vol: s.Vol + b.Vol, Invol: s.Invol + b.Invol, Migr: s.Migr + b.Migr, Threads: s.Threads + b.Threads,
	}
}

// procSched sums /proc/<pid>/task/*/{schedstat,status} ("self" for pid
// 0). Threads that exited between two samples are lost, which for a Go
// process (threads are rarely torn down) is a small undercount.
func procSched(pid int) schedSample {
	dir := "/proc/self/task"
	if pid > 0 {
		dir = "/proc/" + strconv.Itoa(pid) + "/task"
	}
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return schedSample{}
	}
	var s schedSample
	for _, t := range tasks {
		if b, err := os.ReadFile(dir + "/" + t.Name() + "/schedstat"); err == nil {
			f := strings.Fields(string(b))
			if len(f) >= 3 {
				run, _ := strconv.ParseInt(f[0], 10, 64)
				wait, _ := strconv.ParseInt(f[1], 10, 64)
				n, _ := strconv.ParseInt(f[2], 10, 64)
				s.OnCPU += time.Duration(run)
				s.RunWait += time.Duration(wait)
				s.Slices += n
			}
		}
		if b, err := os.ReadFile(dir + "/" + t.Name() + "/status"); err == nil {
			vol, invol := parseCtxt(string(b))
			s.Vol += vol
			s.Invol += invol
		}
		if b, err := os.ReadFile(dir + "/" + t.Name() + "/sched"); err == nil {
			s.Migr += parseSchedField(string(b), "se.nr_migrations")
		}
		s.Threads++
	}
	return s
}

// parseSchedField returns the integer field name of a /proc/<pid>/sched
// text ("name   :   value" lines), 0 when absent.
func parseSchedField(sched, name string) int64 {
	for line := range strings.SplitSeq(sched, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == name {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// parseCtxt returns the voluntary and nonvoluntary context switches of a
// /proc/<pid>/status text.
func parseCtxt(status string) (vol, invol int64) {
	for line := range strings.SplitSeq(status, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch k {
		case "voluntary_ctxt_switches":
			vol, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		case "nonvoluntary_ctxt_switches":
			invol, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return vol, invol
}

// cpuTimes is the first line of /proc/stat: the whole machine's CPU time
// by state, in clock ticks.
type cpuTimes struct {
	Busy, Idle, Steal int64 // idle includes iowait; steal is time the hypervisor gave elsewhere
}

func readCPUTimes() cpuTimes {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return cpuTimes{}
	}
	var t cpuTimes
	for i, x := range f[1:] {
		n, _ := strconv.ParseInt(x, 10, 64)
		switch { // user nice system idle iowait irq softirq steal; guest is inside user
		case i == 3 || i == 4:
			t.Idle += n
		case i == 7:
			t.Steal += n
		case i < 7:
			t.Busy += n
		}
	}
	return t
}

// shares returns the machine's idle and steal fractions between two
// samples, NaN when unknown.
func shares(a, b cpuTimes) (idle, steal float64) {
	busy, id, st := b.Busy-a.Busy, b.Idle-a.Idle, b.Steal-a.Steal
	total := busy + id + st
	if total <= 0 {
		return math.NaN(), math.NaN()
	}
	return float64(id) / float64(total), float64(st) / float64(total)
}
