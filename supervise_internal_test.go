//go:build unix

package sockshare

import (
	"errors"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sockshare/sockshare/passfd"
)

// fakeWorker is a workerProc without a process, for driving the
// supervisor's state machine directly.
func fakeWorker(m *Master, id, slot int) *workerProc {
	return &workerProc{m: m, id: id, slot: slot, started: time.Now(),
		joined: map[uint32]joined{}, groups: map[uint32]*group{},
		exited: make(chan struct{}), ready: make(chan struct{}), ipcDone: make(chan struct{})}
}

// TestFailedReloadThenCrashRestarts: a reload's replacement that dies
// before it is ready, with its exit handled before the old worker gets
// the slot back, schedules a restart that finds the slot taken. When the
// old worker then crashes, its slot must be restarted; the pending flag
// of the skipped restart used to stay set, and the slot stayed empty for
// good with nothing reported.
func TestFailedReloadThenCrashRestarts(t *testing.T) {
	var mu sync.Mutex
	var events []Event
	m, err := NewMaster(Config{Workers: 1, RestartDelay: time.Hour, OnEvent: func(e Event) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	old, nw := fakeWorker(m, 1, 0), fakeWorker(m, 2, 0)
	m.workers[old.id], m.workers[nw.id] = old, nw
	m.slots[0].current = nw // replaceSlot spawned the replacement

	nw.exitEvent = Event{Type: EventExit, WorkerID: nw.id, ExitCode: 1}
	m.onExit(nw)          // the replacement crashed: a restart is scheduled
	m.restoreSlot(0, old) // replaceSlot gives the slot back
	m.restartSlot(0)      // the scheduled restart finds the slot taken

	old.exitEvent = Event{Type: EventExit, WorkerID: old.id, ExitCode: 1}
	m.onExit(old) // now the old worker crashes
	mu.Lock()
	defer mu.Unlock()
	var restarts int
	for _, e := range events {
		if e.Type == EventRestart && e.WorkerID == old.id {
			restarts++
		}
	}
	if restarts != 1 || !m.slots[0].pending {
		t.Fatalf("after the old worker crashed: %d restart events for it, pending=%v; want a restart scheduled\nevents: %v", restarts, m.slots[0].pending, events)
	}
}

// TestUnreachableWorkerIsKilled: a worker the dispatcher cannot hand
// connections to is killed before they go to another worker, so that no
// connection is served twice.
func TestUnreachableWorkerIsKilled(t *testing.T) {
	m, err := NewMaster(Config{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	local, remote, err := passfd.Socketpair()
	if err != nil {
		t.Fatal(err)
	}
	remote.Close()
	local.Close() // the channel is gone: every send fails
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skipf("no sleep command: %v", err)
	}
	w := fakeWorker(m, 1, 0)
	w.cmd, w.pid, w.conn = cmd, cmd.Process.Pid, local
	if err := w.SendConns([]uint64{1}, []int{0}); err == nil {
		t.Fatal("SendConns on a closed channel succeeded")
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("worker ended with %v; want killed", err)
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the unreachable worker is still running 10s after the failed handoff")
	}
}
