package main

import (
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/sockshare/sockshare"
)

// startReaper, when sockshare is PID 1 (in a container), reaps the
// orphans the kernel re-parents to it, as an init must, or they stay
// zombies. It never waits for a worker: os/exec does, and reaping one here
// would steal its exit status. It returns a function that stops it.
func startReaper(m *sockshare.Master, log *slog.Logger) func() {
	if os.Getpid() != 1 {
		return func() {}
	}
	chld := make(chan os.Signal, 1)
	signal.Notify(chld, syscall.SIGCHLD)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-chld:
				reapOrphans(m, log)
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(chld)
		close(done)
	}
}

// reapOrphans waits for every zombie child of ours that is not a worker.
func reapOrphans(m *sockshare.Master, log *slog.Logger) {
	workers := map[int]bool{}
	for _, w := range m.Workers() {
		workers[w.PID] = true
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	self := os.Getpid()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || workers[pid] {
			continue
		}
		ppid, zombie := procParent(pid)
		if ppid != self || !zombie {
			continue
		}
		var ws syscall.WaitStatus
		if got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil); err == nil && got == pid {
			log.Debug("reaped an orphan", "pid", pid, "status", ws.ExitStatus())
		}
	}
}

// procParent reads a process's parent and whether it is a zombie from
// /proc/<pid>/stat ("pid (comm) state ppid ...", comm may hold spaces).
func procParent(pid int) (ppid int, zombie bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	return ppid, f[0] == "Z"
}
