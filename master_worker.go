//go:build unix

package sockshare

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/sockshare/sockshare/internal/ipc"
	"github.com/sockshare/sockshare/passfd"
	"github.com/sockshare/sockshare/tcp"
)

// workerProc is the master's view of one worker process.
type workerProc struct {
	m       *Master
	id      int
	slot    int
	pid     int
	cmd     *exec.Cmd
	conn    *net.UnixConn
	started time.Time

	mu     sync.Mutex
	state  WorkerState
	asked  bool              // the master asked for this exit
	joined map[uint32]joined // dispatcher memberships, by group id
	// chosenBase is, per kernel group, the slot's count of connections
	// chosen when the worker listened: Chosen counts from there.
	chosenBase map[uint32]uint64
	killTimer  *time.Timer // set by disconnect: the deadline
	readyOnce  sync.Once
	protoErr   error

	ready     chan struct{} // closed when the worker is ready
	exited    chan struct{} // closed when the process has been waited for
	handled   chan struct{} // closed when the supervisor has handled the exit (onExit)
	ipcDone   chan struct{} // closed when the reader loop ended
	exitEvent Event

	groups map[uint32]*group // groups it listens on; guarded by Master.mu
}

// joined is a worker's membership of a group's dispatcher.
type joined struct {
	g   *group
	mem *tcp.Member
}

// memberships returns a copy of w.joined.
func (w *workerProc) memberships() []joined {
	w.mu.Lock()
	defer w.mu.Unlock()
	js := make([]joined, 0, len(w.joined))
	for _, j := range w.joined {
		js = append(js, j)
	}
	return js
}

func (w *workerProc) info(restarts int) WorkerInfo {
	w.mu.Lock()
	wi := WorkerInfo{ID: w.id, Slot: w.slot, PID: w.pid, State: w.state, Restarts: restarts, Started: w.started}
	w.mu.Unlock()
	for _, j := range w.memberships() {
		if j.g.kernel != nil {
			continue // its dispatcher only hands a leaving slot's queue
		}
		st := j.g.disp.MemberStats(j.mem)
		wi.Taken += st.Taken
		wi.Active += st.Active
		wi.Inflight += st.Inflight
	}
	w.m.mu.Lock()
	var kernel []*group
	for _, g := range w.groups {
		if g.kernel != nil {
			kernel = append(kernel, g)
		}
	}
	w.m.mu.Unlock()
	for _, g := range kernel {
		if c := g.kernel.Chosen(); w.slot < len(c) {
			w.mu.Lock()
			base := w.chosenBase[g.id]
			w.mu.Unlock()
			wi.Chosen += c[w.slot] - base
		}
		if o := g.kernel.Open(); w.slot < len(o) {
			wi.Open += o[w.slot]
		}
	}
	return wi
}

func (w *workerProc) setState(s WorkerState) {
	w.mu.Lock()
	if w.state < s || s == StateExited {
		w.state = s
	}
	w.mu.Unlock()
}

// send encodes msg and sends it with fds (which stay the caller's).
func (w *workerProc) send(msg *ipc.Msg, fds []int) error {
	encErr, err := ipc.Send(w.conn, msg, fds)
	if encErr != nil {
		return encErr
	}
	if err != nil {
		return fmt.Errorf("sockshare: send %v to worker %d: %w", msg.Type, w.id, err)
	}
	return nil
}

// SendConns implements tcp.Sink. A worker that cannot be reached is
// killed: the dispatcher hands its connections to others, and a worker
// still running could serve them too.
func (w *workerProc) SendConns(ids []uint64, fds []int) error {
	err := w.send(&ipc.Msg{Type: ipc.Conns, IDs: ids}, fds)
	if err != nil {
		w.m.log.Error("sockshare: cannot hand connections to a worker; killing it", "worker", w.id, "slot", w.slot, "pid", w.pid, "err", err)
		w.mu.Lock()
		if w.protoErr == nil {
			w.protoErr = err
		}
		w.mu.Unlock()
		w.kill()
	}
	return err
}

// readLoop serves the worker's messages until EOF or a protocol error.
// A protocol error kills that worker, never the master.
func (w *workerProc) readLoop() {
	defer close(w.ipcDone)
	defer w.leaveGroups()
	buf := make([]byte, ipc.MaxMessage+1)
	for {
		// Workers never send descriptors: maxFDs 0 makes passfd close
		// any that arrive and report it.
		n, fds, err := passfd.Recv(w.conn, buf, 0)
		if err != nil {
			passfd.CloseAll(fds)
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return
			}
			w.protocolError(fmt.Errorf("ipc receive: %w", err))
			return
		}
		msg, err := ipc.Decode(buf[:n])
		if err != nil {
			w.protocolError(err)
			return
		}
		if err := w.handle(&msg); err != nil {
			w.protocolError(err)
			return
		}
	}
}

func (w *workerProc) protocolError(err error) {
	w.mu.Lock()
	if w.protoErr == nil {
		w.protoErr = err
	}
	w.mu.Unlock()
	w.m.log.Error("sockshare: worker broke the IPC protocol; killing it", "worker", w.id, "slot", w.slot, "pid", w.pid, "err", err)
	// Kill first: a worker that saw its channel close first would take
	// the master for gone and exit on its own, and the exit would not say
	// that it was killed.
	w.kill()
	w.conn.Close()
}

func (w *workerProc) handle(msg *ipc.Msg) error {
	m := w.m
	switch msg.Type {
	case ipc.Hello:
		if int(msg.PID) != w.pid {
			return fmt.Errorf("hello from pid %d, expected %d", msg.PID, w.pid)
		}
		w.setState(StateOnline)
		m.emit(Event{Type: EventOnline, WorkerID: w.id, Slot: w.slot, PID: w.pid})
	case ipc.Listen:
		m.serveListen(w, msg)
	case ipc.Ready:
		w.markReady()
	case ipc.Ack:
		w.ack(msg)
	case ipc.ListenerClosed:
		w.mu.Lock()
		j := w.joined[msg.Listener]
		w.mu.Unlock()
		if j.mem != nil {
			// What is still in its window comes back as Returned.
			j.g.disp.Drain(j.mem)
		}
		m.mu.Lock()
		g := w.groups[msg.Listener]
		m.mu.Unlock()
		if g != nil {
			m.leaveGroup(w, g, false)
		}
	case ipc.User:
		if m.cfg.OnMessage != nil {
			m.cfg.OnMessage(w.id, msg.Payload)
		}
	default:
		return fmt.Errorf("unexpected %v message from a worker", msg.Type)
	}
	return nil
}

// ack routes an acknowledgement to the dispatchers it concerns. Ids are
// grouped by listener (their top bits).
func (w *workerProc) ack(msg *ipc.Msg) {
	type parts struct{ taken, returned, closed []uint64 }
	byListener := map[uint32]*parts{}
	get := func(id uint64) *parts {
		l := ipc.ListenerOf(id)
		p := byListener[l]
		if p == nil {
			p = &parts{}
			byListener[l] = p
		}
		return p
	}
	for _, id := range msg.IDs {
		p := get(id)
		p.taken = append(p.taken, id)
	}
	for _, id := range msg.Returned {
		p := get(id)
		p.returned = append(p.returned, id)
	}
	for _, id := range msg.Closed {
		p := get(id)
		p.closed = append(p.closed, id)
	}
	for lid, p := range byListener {
		w.mu.Lock()
		j := w.joined[lid]
		w.mu.Unlock()
		if j.mem == nil {
			continue
		}
		if unknown := j.g.disp.Ack(j.mem, p.taken, p.returned, p.closed); unknown > 0 {
			w.m.log.Warn("sockshare: worker acknowledged connections it was not handed", "worker", w.id, "count", unknown)
		}
	}
}

func (w *workerProc) markReady() {
	w.readyOnce.Do(func() {
		w.setState(StateReady)
		// Live in the kernel's program before anyone hears it is ready:
		// a client that connects once WaitReady returns must be able to
		// reach this worker.
		w.m.livePinned(w)
		w.m.mu.Lock()
		close(w.ready)
		w.m.notifyLocked()
		w.m.mu.Unlock()
		w.m.emit(Event{Type: EventReady, WorkerID: w.id, Slot: w.slot, PID: w.pid})
	})
}

func (w *workerProc) readyWatchdog(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.ready:
	case <-w.exited:
	case <-t.C:
		w.m.log.Error("sockshare: worker not ready in time; killing it", "worker", w.id, "slot", w.slot, "pid", w.pid, "timeout", d)
		w.mu.Lock()
		if w.protoErr == nil {
			w.protoErr = fmt.Errorf("not ready within %v", d)
		}
		w.mu.Unlock()
		w.kill()
	}
}

// leaveGroups takes the worker out of every dispatcher: its unacknowledged
// connections go to the other workers.
func (w *workerProc) leaveGroups() {
	w.mu.Lock()
	js := w.joined
	w.joined = map[uint32]joined{}
	w.mu.Unlock()
	for _, j := range js {
		j.g.disp.Remove(j.mem)
	}
}

// wait reaps the process and reports its exit to the supervisor.
func (w *workerProc) wait() {
	err := w.cmd.Wait()
	w.conn.Close()
	<-w.ipcDone
	w.setState(StateExited)
	e := Event{Type: EventExit, WorkerID: w.id, Slot: w.slot, PID: w.pid, ExitCode: -1}
	if ps := w.cmd.ProcessState; ps != nil {
		e.ExitCode = ps.ExitCode()
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			e.Signal = ws.Signal()
		}
	} else if err != nil {
		e.Err = err
	}
	w.mu.Lock()
	e.Asked = w.asked
	if w.protoErr != nil {
		e.Err = w.protoErr
	}
	if w.killTimer != nil {
		w.killTimer.Stop()
	}
	w.mu.Unlock()
	w.exitEvent = e
	w.m.pushExit(w) // before exited closes: shutdown relies on the order
	close(w.exited)
}

// disconnect asks the worker to drain and exit: the master stops handing it
// connections and sends SIGTERM.
func (w *workerProc) disconnect() {
	w.mu.Lock()
	w.asked = true
	already := w.state == StateDisconnecting || w.state == StateExited
	if !already {
		w.state = StateDisconnecting
	}
	if !already {
		// The deadline holds whoever asked and whether they still wait.
		w.killTimer = time.AfterFunc(w.m.cfg.ShutdownTimeout, func() {
			w.m.log.Warn("sockshare: worker did not exit before the disconnect deadline; killing it", "worker", w.id, "pid", w.pid)
			w.kill()
		})
	}
	w.mu.Unlock()
	if already {
		return
	}
	for _, j := range w.memberships() {
		j.g.disp.Drain(j.mem)
	}
	w.m.emit(Event{Type: EventDisconnect, WorkerID: w.id, Slot: w.slot, PID: w.pid})
	w.cmd.Process.Signal(syscall.SIGTERM)
}

func (w *workerProc) kill() {
	if w.cmd != nil && w.cmd.Process != nil {
		w.cmd.Process.Kill()
	}
}

func sortWorkerInfo(ws []WorkerInfo) {
	slices.SortFunc(ws, func(a, b WorkerInfo) int {
		if a.Slot != b.Slot {
			return a.Slot - b.Slot
		}
		return a.ID - b.ID
	})
}
