//go:build linux

package main

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// As PID 1 (a container's init) the runner reaps the orphans the kernel
// re-parents to it: a worker's background child that outlives its parent
// must not stay a zombie. The runner runs as PID 1 of a PID namespace made
// by unshare(1); the worker leaves an orphan sleeping 1s.
func TestPID1ReapsOrphans(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("a PID namespace needs root")
	}
	needCommand(t, "unshare")
	needCommand(t, "python3")
	r := startRunnerWith(t, runOpts{wrap: []string{"unshare", "--pid", "--fork", "--mount-proc", "--kill-child=SIGKILL"}},
		"-workers", "1", "-policy", "shared", "-ready", "started", "-listen", "tcp://127.0.0.1:0",
		"--", "sh", "-c", "(sleep 1 &); exec python3 testdata/worker.py")
	addr := r.listening("shared", 1)
	if a := get(addr, "/"); a.err != nil {
		t.Fatalf("request: %v", a.err)
	}
	runner := childOf(t, r.pid()) // unshare's child: PID 1 inside
	if s := statField(runner, 1); s == "" {
		t.Fatalf("no runner process %d", runner)
	}

	// The orphan: a sleep whose parent is the runner, until it exits.
	deadline := time.Now().Add(10 * time.Second)
	orphan := 0
	for orphan == 0 && time.Now().Before(deadline) {
		for _, c := range children(runner) {
			if strings.Contains(statField(c, 0), "(sleep)") {
				orphan = c
			}
		}
		if orphan == 0 {
			time.Sleep(20 * time.Millisecond) // no event to wait on: /proc is polled
		}
	}
	if orphan == 0 {
		t.Fatal("the worker's orphan never showed up as the runner's child")
	}
	for time.Now().Before(deadline) {
		state := statField(orphan, 1)
		if state == "" {
			break // reaped
		}
		time.Sleep(20 * time.Millisecond)
	}
	if state := statField(orphan, 1); state != "" {
		t.Fatalf("the orphan %d is still there in state %s 10s after it started: not reaped", orphan, state)
	}
	if err := syscall.Kill(runner, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := r.wait(30 * time.Second); code != 0 {
		t.Fatalf("runner exit status %d after SIGTERM\n%s", code, r.output())
	}
}

// childOf returns the only child of pid.
func childOf(t *testing.T, pid int) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if cs := children(pid); len(cs) == 1 {
			return cs[0]
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("process %d has not exactly one child: %v", pid, children(pid))
	return 0
}

// children lists pid's children from /proc/<pid>/task/*/children.
func children(pid int) []int {
	tasks, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	var out []int
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + task.Name() + "/children")
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// statField returns field i of /proc/<pid>/stat after the pid: 0 is
// "(comm)", 1 the state; "" when the process is gone.
func statField(pid, i int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	s := string(b)
	open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || close < open {
		return ""
	}
	if i == 0 {
		return s[open : close+1]
	}
	f := strings.Fields(s[close+1:])
	if i-1 >= len(f) {
		return ""
	}
	return f[i-1]
}
