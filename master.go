//go:build unix

package sockshare

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockshare/sockshare/internal/ipc"
	"github.com/sockshare/sockshare/internal/restart"
	"github.com/sockshare/sockshare/internal/worker"
	"github.com/sockshare/sockshare/passfd"
	"github.com/sockshare/sockshare/policy"
	"github.com/sockshare/sockshare/tcp"
)

// Master starts and supervises the workers and serves their Listen calls.
// Build one with NewMaster and call Run.
type Master struct {
	cfg      Config
	pol      policy.Name
	dispatch string // DispatchMaster or DispatchKernel
	log      *slog.Logger
	restart  restart.Policy

	running atomic.Bool

	mu        sync.Mutex
	workers   map[int]*workerProc // live processes by id
	slots     []*slotState
	groups    map[groupKey]*group
	groupByID map[uint32]*group
	pinned    []*group // Config.Sockets, in order
	nextID    int
	nextGroup uint32
	stopping  bool

	evmu     sync.Mutex // serialises OnEvent
	reloadMu sync.Mutex // one reload at a time

	exitQ    []*workerProc // exited workers not yet handled, guarded by mu
	exitKick chan struct{} // signalled when exitQ grows
	restarts chan int
	reloads  chan reloadReq
	done     chan struct{} // closed when Run returns
	spawning sync.WaitGroup

	changed        chan struct{} // closed and replaced on readiness, listen errors, exits; guarded by mu
	firstListenErr *ListenError  // for WaitReady; guarded by mu
}

type slotState struct {
	current  *workerProc
	restarts int
	history  restart.History
	givenUp  bool
	pending  bool // a restart is scheduled
	removed  bool // scaled away: no worker, no restart (see Scale)
}

// NewMaster validates cfg and returns a Master. Errors wrap ErrBadConfig
// (and policy.ErrUnknownPolicy for a bad policy name).
func NewMaster(cfg Config) (*Master, error) {
	if err := worker.MarkerErr(); err != nil {
		return nil, err
	}
	c, pol, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := platformCheck(); err != nil {
		return nil, err
	}
	dispatch, err := resolveDispatch(c.Dispatch, c.Logger)
	if err != nil {
		return nil, err
	}
	m := &Master{
		cfg:      c,
		pol:      pol,
		dispatch: dispatch,
		log:      c.Logger,
		restart: restart.Policy{FirstDelay: c.RestartDelay, MaxDelay: c.MaxRestartDelay,
			StableAfter: c.StableAfter, Window: c.CrashWindow, MaxCrashes: c.MaxCrashes},
		workers:   make(map[int]*workerProc),
		slots:     make([]*slotState, c.Workers),
		groups:    make(map[groupKey]*group),
		groupByID: make(map[uint32]*group),
		exitKick:  make(chan struct{}, 1),
		done:      make(chan struct{}),
		changed:   make(chan struct{}),
		restarts:  make(chan int, c.Workers),
		reloads:   make(chan reloadReq),
	}
	for i := range m.slots {
		m.slots[i] = &slotState{}
	}
	return m, nil
}

// platformCheck makes sure this OS gives us SOCK_SEQPACKET socketpairs
// with descriptor passing.
func platformCheck() error {
	a, b, err := passfd.Socketpair()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
	a.Close()
	b.Close()
	return nil
}

// Policy is the policy the master serves addresses under.
func (m *Master) Policy() policy.Name { return m.pol }

// Dispatch is who chooses the worker of each connection under the
// dispatching policies: DispatchMaster or DispatchKernel.
func (m *Master) Dispatch() string { return m.dispatch }

// NumWorkers is the configured number of worker slots.
// It changes with Scale.
func (m *Master) NumWorkers() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.activeLocked()
}

// activeLocked is the number of slots in use: the slots below it. Slots
// at and above it were removed by Scale. Call with m.mu held.
func (m *Master) activeLocked() int {
	n := len(m.slots)
	for n > 0 && m.slots[n-1].removed {
		n--
	}
	return n
}

// Run starts the workers and supervises them until ctx ends, then shuts
// down gracefully (see the package documentation) and returns nil. It
// returns an error if the workers cannot be started, or ErrAllWorkersFailed
// when every slot was given up. Run may be called once.
func (m *Master) Run(ctx context.Context) error {
	if !m.running.CompareAndSwap(false, true) {
		return errors.New("sockshare: Master.Run called twice")
	}
	defer close(m.done)
	if err := m.openSockets(); err != nil {
		m.shutdown()
		return err
	}
	for slot := range m.slots {
		if _, err := m.spawn(slot); err != nil {
			m.shutdown()
			return fmt.Errorf("sockshare: start worker for slot %d: %w", slot, err)
		}
	}
	for {
		select {
		case <-ctx.Done():
			m.shutdown()
			return nil
		case <-m.exitKick:
			for _, w := range m.takeExits() {
				m.onExit(w)
			}
			if m.allGivenUp() {
				m.shutdown()
				return ErrAllWorkersFailed
			}
		case slot := <-m.restarts:
			m.restartSlot(slot)
		case r := <-m.reloads:
			go r.run(m)
		}
	}
}

func (m *Master) emit(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	m.evmu.Lock()
	defer m.evmu.Unlock()
	if m.cfg.OnEvent != nil {
		m.cfg.OnEvent(e)
	}
}

func (m *Master) workerEnv(id, slot, ipcFD int) []string {
	env := make([]string, 0, len(m.cfg.Env)+6)
	hasGOMAXPROCS := false
	for _, kv := range m.cfg.Env {
		if strings.HasPrefix(kv, ipc.EnvPrefix) {
			continue // never let a marker through from our own environment
		}
		if strings.HasPrefix(kv, "GOMAXPROCS=") {
			hasGOMAXPROCS = true
		}
		env = append(env, kv)
	}
	if !hasGOMAXPROCS && m.cfg.WorkerGOMAXPROCS > 0 {
		env = append(env, "GOMAXPROCS="+strconv.Itoa(m.cfg.WorkerGOMAXPROCS))
	}
	if m.cfg.WorkerEnv != nil {
		for _, kv := range m.cfg.WorkerEnv(id, slot) {
			if !strings.HasPrefix(kv, ipc.EnvPrefix) {
				env = append(env, kv)
			}
		}
	}
	return append(env,
		ipc.EnvWorkerID+"="+strconv.Itoa(id),
		ipc.EnvSlot+"="+strconv.Itoa(slot),
		ipc.EnvIPCFD+"="+strconv.Itoa(ipcFD),
		ipc.EnvMasterPID+"="+strconv.Itoa(os.Getpid()),
	)
}

// pushExit queues an exited worker for the supervisor. Unbounded, but it
// never holds more than the workers that were alive.
func (m *Master) pushExit(w *workerProc) {
	m.mu.Lock()
	m.exitQ = append(m.exitQ, w)
	m.mu.Unlock()
	select {
	case m.exitKick <- struct{}{}:
	default:
	}
}

func (m *Master) takeExits() []*workerProc {
	m.mu.Lock()
	defer m.mu.Unlock()
	q := m.exitQ
	m.exitQ = nil
	return q
}

// errStopping is returned by spawn once shutdown has begun.
var errStopping = errors.New("the master is shutting down")

// spawn starts a worker process for slot. It refuses once shutdown has
// begun, and shutdown waits for spawns in progress, so no worker can start
// behind shutdown's back.
func (m *Master) spawn(slot int) (*workerProc, error) {
	m.mu.Lock()
	if m.stopping {
		m.mu.Unlock()
		return nil, errStopping
	}
	m.spawning.Add(1)
	m.nextID++
	id := m.nextID
	m.mu.Unlock()
	defer m.spawning.Done()

	inherited, err := m.inheritFiles(slot)
	if err != nil {
		return nil, err
	}
	defer closeFiles(inherited)
	local, remote, err := passfd.Socketpair()
	if err != nil {
		return nil, err
	}

	cmd := exec.Command(m.cfg.Program, m.cfg.Args...)
	cmd.Env = m.workerEnv(id, slot, 3+len(inherited))
	cmd.Dir = m.cfg.Dir
	cmd.Stdout = m.cfg.Stdout
	cmd.Stderr = m.cfg.Stderr
	cmd.ExtraFiles = append(inherited, remote) // from fd 3 in the child
	cmd.SysProcAttr = workerSysProcAttr()
	err = cmd.Start()
	remote.Close()
	if err != nil {
		local.Close()
		return nil, err
	}
	w := &workerProc{
		m:          m,
		id:         id,
		slot:       slot,
		pid:        cmd.Process.Pid,
		cmd:        cmd,
		conn:       local,
		started:    time.Now(),
		state:      StateStarting,
		joined:     make(map[uint32]joined),
		chosenBase: make(map[uint32]uint64),
		groups:     make(map[uint32]*group),
		exited:     make(chan struct{}),
		handled:    make(chan struct{}),
		ipcDone:    make(chan struct{}),
		ready:      make(chan struct{}),
	}
	m.mu.Lock()
	m.workers[id] = w
	m.joinPinnedLocked(w)
	s := m.slots[slot]
	s.current = w
	s.pending = false
	m.notifyLocked()
	m.mu.Unlock()

	m.log.Debug("worker started", "worker", id, "slot", slot, "pid", w.pid)
	m.emit(Event{Type: EventFork, WorkerID: id, Slot: slot, PID: w.pid})
	go w.readLoop()
	go w.wait()
	if m.cfg.ReadyTimeout > 0 {
		go w.readyWatchdog(m.cfg.ReadyTimeout)
	}
	if m.cfg.Readiness != nil {
		go w.awaitReadiness(w.info(0))
	}
	return w, nil
}

func (m *Master) onExit(w *workerProc) {
	if w.handled != nil {
		defer close(w.handled)
	}
	e := w.exitEvent
	m.mu.Lock()
	delete(m.workers, w.id)
	s := m.slots[w.slot]
	if s.current == w {
		s.current = nil
	}
	m.notifyLocked()
	stopping := m.stopping
	crashed := !w.asked && !stopping
	var restart bool
	var delay time.Duration
	var giveUp error
	if crashed {
		gaveUp, n := m.restart.Crashed(&s.history, w.started, time.Now())
		if gaveUp {
			s.givenUp = true
			giveUp = fmt.Errorf("slot %d crashed %d times within %v; giving up", w.slot, n, m.cfg.CrashWindow)
		} else if s.current == nil && !s.pending {
			restart = true
			delay = m.restart.NextDelay(&s.history)
			s.pending = true
		}
	}
	// Nothing will come back to the slot's groups unless a restart is on
	// its way or another worker holds the slot (a reload's replacement).
	emptied := !stopping && s.current == nil && !s.pending
	groups := make([]*group, 0, len(w.groups))
	for _, g := range w.groups {
		groups = append(groups, g)
	}
	m.mu.Unlock()

	for _, g := range groups {
		m.leaveGroup(w, g, restart)
		if g.kernel != nil {
			// Its connections died with it, uncounted: unless another
			// worker of the slot still counts there, start from zero.
			m.mu.Lock()
			alone := !g.slotListensLocked(w.slot)
			m.mu.Unlock()
			if alone {
				g.kernel.ClearCount(w.slot)
			}
		}
	}
	if emptied {
		m.unreserveSlot(w.slot)
	}
	if crashed {
		m.log.Warn("worker crashed", "worker", w.id, "slot", w.slot, "pid", w.pid, "code", e.ExitCode, "signal", e.Signal, "err", e.Err)
	}
	m.emit(e)
	if giveUp != nil {
		m.log.Error("sockshare: "+giveUp.Error(), "slot", w.slot)
		m.emit(Event{Type: EventGiveUp, WorkerID: w.id, Slot: w.slot, PID: w.pid, Err: giveUp})
	}
	if restart {
		m.emit(Event{Type: EventRestart, WorkerID: w.id, Slot: w.slot, PID: w.pid, Delay: delay})
		slot := w.slot
		time.AfterFunc(delay, func() {
			select {
			case m.restarts <- slot:
			case <-m.done:
			}
		})
	}
}

func (m *Master) restartSlot(slot int) {
	m.mu.Lock()
	s := m.slots[slot]
	// The restart is no longer pending whatever happens next: a slot
	// taken meanwhile (a reload's replacement) must be restarted again
	// when its worker crashes.
	s.pending = false
	skip := m.stopping || s.givenUp || s.removed || s.current != nil
	if !skip {
		s.restarts++
	}
	m.mu.Unlock()
	if skip {
		return
	}
	if _, err := m.spawn(slot); err != nil {
		if errors.Is(err, errStopping) {
			return
		}
		m.log.Error("sockshare: restart failed", "slot", slot, "err", err)
		// Count it as a crash of a worker that never ran.
		w := &workerProc{slot: slot, started: time.Now(), exited: make(chan struct{}), handled: make(chan struct{})}
		w.exitEvent = Event{Type: EventExit, Slot: slot, ExitCode: -1, Err: err}
		m.onExit(w)
	}
}

// notifyLocked wakes WaitReady. Call with m.mu held.
func (m *Master) notifyLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// WaitReady waits until every slot that is not given up has a ready worker
// (one that called Ready or whose first Listen was served) and returns nil.
// It returns a *ListenError as soon as any worker's Listen fails in the
// master (the first such error since Run started), ErrStopped if Run
// returns first, or ctx's error. Call it beside Run, for example to print a
// ready line once the service answers.
func (m *Master) WaitReady(ctx context.Context) error {
	for {
		m.mu.Lock()
		if m.firstListenErr != nil {
			err := m.firstListenErr
			m.mu.Unlock()
			return err
		}
		ready, live := true, 0
		for _, s := range m.slots {
			if s.givenUp || s.removed {
				continue
			}
			live++
			if s.current == nil || !isClosed(s.current.ready) {
				ready = false
			}
		}
		ch := m.changed
		m.mu.Unlock()
		if ready && live > 0 {
			return nil
		}
		select {
		case <-ch:
		case <-m.done:
			return ErrStopped
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func (m *Master) allGivenUp() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.slots {
		if !s.givenUp && !s.removed {
			return false
		}
	}
	return true
}

// Workers returns a snapshot of the running workers, by slot then id.
func (m *Master) Workers() []WorkerInfo {
	m.mu.Lock()
	ws := make([]*workerProc, 0, len(m.workers))
	for _, w := range m.workers {
		ws = append(ws, w)
	}
	restarts := make([]int, len(m.slots))
	for i, s := range m.slots {
		restarts[i] = s.restarts
	}
	m.mu.Unlock()
	out := make([]WorkerInfo, 0, len(ws))
	for _, w := range ws {
		out = append(out, w.info(restarts[w.slot]))
	}
	sortWorkerInfo(out)
	return out
}

// Send sends payload to the worker with the given id, which receives it
// through HandleMessages. Payloads are bounded by ipc.MaxMessage.
func (m *Master) Send(workerID int, payload []byte) error {
	m.mu.Lock()
	w := m.workers[workerID]
	m.mu.Unlock()
	if w == nil {
		return fmt.Errorf("%w: %d", ErrUnknownWorker, workerID)
	}
	return w.send(&ipc.Msg{Type: ipc.User, Payload: payload}, nil)
}

// shutdown stops accepting, lets the workers drain within the deadline,
// kills the rest and closes every socket.
func (m *Master) shutdown() {
	m.mu.Lock()
	if m.stopping {
		m.mu.Unlock()
		return
	}
	m.stopping = true
	m.mu.Unlock()
	m.spawning.Wait() // no worker starts after this point
	m.mu.Lock()
	var disps []*tcp.Dispatcher
	for _, g := range m.groups {
		if g.disp != nil {
			disps = append(disps, g.disp)
		}
	}
	m.mu.Unlock()

	deadline := time.Now().Add(m.cfg.ShutdownTimeout)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()

	// Stop accepting, then let the workers take what the master already
	// accepted before they are told to go.
	for _, d := range disps {
		d.StopAccepting()
	}
	idleCtx, idleCancel := context.WithTimeout(ctx, m.cfg.ShutdownTimeout/2)
	for _, d := range disps {
		d.WaitIdle(idleCtx)
	}
	idleCancel()

	m.mu.Lock()
	ws := make([]*workerProc, 0, len(m.workers))
	for _, w := range m.workers {
		ws = append(ws, w)
	}
	m.mu.Unlock()
	for _, w := range ws {
		w.disconnect()
	}
	for _, w := range ws {
		select {
		case <-w.exited:
		case <-ctx.Done():
			m.log.Warn("sockshare: worker did not exit before the shutdown deadline; killing it", "worker", w.id, "pid", w.pid)
			w.kill()
			<-w.exited
		}
	}
	// Every worker has exited and queued itself: deliver their events.
	for _, w := range m.takeExits() {
		m.onExit(w)
	}
	m.mu.Lock()
	groups := make([]*group, 0, len(m.groups))
	for _, g := range m.groups {
		groups = append(groups, g)
	}
	m.groups = map[groupKey]*group{}
	m.mu.Unlock()
	for _, g := range groups {
		g.close()
	}
}

// Listeners returns a snapshot of every address the master serves.
func (m *Master) Listeners() []ListenerInfo {
	m.mu.Lock()
	gs := make([]*group, 0, len(m.groups))
	for _, g := range m.groups {
		gs = append(gs, g)
	}
	m.mu.Unlock()
	out := make([]ListenerInfo, 0, len(gs))
	for _, g := range gs {
		li := ListenerInfo{Network: g.key.network, Addr: g.addr.String(), Requested: g.key.addr, Pinned: g.pinned, Policy: g.policy, Dispatch: g.dispatchLabel()}
		if g.kernel != nil {
			li.Chosen, li.Open = g.kernel.Chosen(), g.kernel.Open()
		}
		if g.disp != nil {
			s := g.disp.Stats()
			li.Accepted, li.Taken, li.Returned = s.Accepted, s.Taken, s.Returned
			li.Redispatched, li.Dropped = s.Redispatched, s.Dropped
			li.Pending, li.Inflight = s.Pending, s.Inflight
		}
		out = append(out, li)
	}
	slices.SortFunc(out, func(a, b ListenerInfo) int { return strings.Compare(a.Addr, b.Addr) })
	return out
}
