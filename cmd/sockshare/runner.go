//go:build unix

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sockshare/sockshare"
	"github.com/sockshare/sockshare/cmd/sockshare/internal/cli"
	"github.com/sockshare/sockshare/cmd/sockshare/internal/fdproto"
	"github.com/sockshare/sockshare/cmd/sockshare/internal/metrics"
	"github.com/sockshare/sockshare/cmd/sockshare/internal/sdnotify"
)

// ipcGrace is how long a worker under a policy the master dispatches has
// to open its IPC channel (a program built with the library does so as it
// starts) before the runner concludes it is not such a program.
const ipcGrace = 5 * time.Second

// readyLimit bounds every -ready mode: a worker not ready by then is
// killed, and the exit counts as a crash carrying the reason.
const readyLimit = 30 * time.Second

// runner is one "sockshare run": the master, its workers' readiness and
// what the metrics report.
type runner struct {
	opts   *cli.Options
	socks  []fdproto.Socket // -listen, in order
	log    *slog.Logger
	stderr io.Writer
	m      *sockshare.Master

	// inherited are the sockets workers get as descriptors: socks minus
	// those the master accepts on (rr, leastconn, sticky under master
	// dispatch). Set once the master exists.
	inherited []fdproto.Socket
	needIPC   bool // some -listen is dispatched by the master: workers must be built with the library

	mu        sync.Mutex
	receivers map[int]*sdnotify.Receiver // by worker id, under -ready notify
	online    map[int]chan struct{}      // closed when the worker's IPC hello arrives
	restarts  map[int]uint64             // by slot
	taken     map[int]uint64             // by worker id: its Taken at the last scrape
	handed    map[int]uint64             // by slot: connections its workers took, summed
	lastExit  map[int]string             // by slot: how its last worker ended
	reloads   uint64
	fatal     error // ends the run: a worker that cannot work under this policy
	fatalOnce sync.Once
	stop      context.CancelFunc
}

func runCommand(args []string, stdout, stderr io.Writer) int {
	opts, err := cli.Parse(args)
	if errors.Is(err, cli.ErrHelp) {
		io.WriteString(stdout, cli.Usage())
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	socks, err := cli.ParseListen(opts, fdproto.ParseListenURL)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	path, err := exec.LookPath(opts.Command[0])
	if err != nil {
		fmt.Fprintf(stderr, "sockshare: command not found: %s: %v\n", opts.Command[0], errors.Unwrap(err))
		return 1
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "sockshare: cannot find its own executable for the exec shim: %v\n", err)
		return 1
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	r := &runner{opts: opts, socks: socks, log: log, stderr: stderr,
		receivers: map[int]*sdnotify.Receiver{}, online: map[int]chan struct{}{},
		restarts: map[int]uint64{}, lastExit: map[int]string{},
		taken: map[int]uint64{}, handed: map[int]uint64{}}

	// Socket activation: serve what systemd passed us instead of binding.
	files, err := r.activation()
	if err != nil {
		fmt.Fprintln(stderr, "sockshare:", err)
		return 1
	}
	sockets := make([]sockshare.Socket, len(socks))
	activated := false
	for i, s := range socks {
		sockets[i] = sockshare.Socket{Network: s.Network, Address: s.Addr, File: files[i]}
		activated = activated || files[i] != nil
	}
	dispatch := opts.Dispatch
	if activated && dispatch == sockshare.DispatchAuto {
		// The kernel's program needs sockets the master makes itself.
		dispatch = sockshare.DispatchMaster
		log.Info("socket activation: master dispatch, as kernel dispatch cannot use a socket systemd made")
	}
	cfg := sockshare.Config{
		Workers:         opts.Workers,
		Policy:          string(opts.Policy),
		Dispatch:        dispatch,
		Program:         self,
		Args:            shimArgs(path, opts.Command),
		Env:             workerBaseEnv(os.Environ()),
		Logger:          log,
		ShutdownTimeout: opts.ShutdownTimeout,
		Sockets:         sockets,
		WorkerEnv:       r.workerEnv,
		Readiness:       r.readiness,
		ReadyTimeout:    -1, // readiness bounds it, naming the reason
		OnEvent:         r.onEvent,
	}
	m, err := sockshare.NewMaster(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "sockshare:", err)
		if errors.Is(err, sockshare.ErrBadConfig) {
			return 2
		}
		return 1
	}
	r.m = m
	for _, s := range socks {
		if (sockshare.Socket{Network: s.Network}).Inherited(m.Policy(), m.Dispatch()) {
			r.inherited = append(r.inherited, s)
		} else {
			r.needIPC = true
		}
	}
	return r.serve(stdout)
}

// activation takes the sockets systemd passed this process (LISTEN_FDS
// with LISTEN_PID = our pid) and returns, for each -listen, the one it
// matches, or nil to bind.
func (r *runner) activation() ([]*os.File, error) {
	files := make([]*os.File, len(r.socks))
	inh, err := fdproto.Inherited()
	if err != nil || len(inh) == 0 {
		return files, err
	}
	match, err := fdproto.Match(r.socks, inh)
	if err != nil {
		return nil, err
	}
	for li, ii := range match {
		files[li] = inh[ii].File
		r.log.Info("serving a socket systemd passed", "listen", r.socks[li].String(), "fd", inh[ii].String())
	}
	return files, nil
}

// workerBaseEnv is the environment every worker starts from: ours, without
// the variables that describe our own sockets and readiness, which are
// not the worker's.
func workerBaseEnv(env []string) []string {
	env = fdproto.StripEnv(env)
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, sdnotify.EnvNotifySocket+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// bound returns socks with their bound addresses (port 0 resolved), from
// the master's pinned listeners.
func (r *runner) bound(socks []fdproto.Socket) []fdproto.Socket {
	addrs := map[[2]string]string{}
	for _, l := range r.m.Listeners() {
		if l.Pinned {
			addrs[[2]string{l.Network, l.Requested}] = l.Addr
		}
	}
	out := make([]fdproto.Socket, len(socks))
	for i, s := range socks {
		out[i] = s
		if a, ok := addrs[[2]string{s.Network, s.Addr}]; ok {
			out[i].Addr = a
		}
	}
	return out
}

// workerEnv is Config.WorkerEnv: the fd protocols, the exec shim's marker,
// and under -ready notify a NOTIFY_SOCKET of the worker's own.
func (r *runner) workerEnv(id, slot int) []string {
	env := fdproto.WorkerEnv(r.bound(r.inherited), id, slot)
	env = append(env, sockshare.EnvExecShim+"=1")
	r.mu.Lock()
	defer r.mu.Unlock()
	r.online[id] = make(chan struct{})
	if r.opts.Ready.Mode == cli.ReadyNotify {
		rc, err := sdnotify.Listen(fmt.Sprint("worker-", id))
		if err != nil {
			r.log.Error("sd_notify socket for a worker", "worker", id, "err", err)
			return env
		}
		r.receivers[id] = rc
		env = append(env, sdnotify.EnvNotifySocket+"="+rc.Addr())
		go r.watchNotify(id, rc)
	}
	return env
}

// watchNotify logs a worker's STATUS and STOPPING messages.
func (r *runner) watchNotify(id int, rc *sdnotify.Receiver) {
	for msg := range rc.Messages() {
		if msg.Status != "" {
			r.log.Info("worker status", "worker", id, "status", msg.Status)
		}
		if msg.Stopping {
			r.log.Info("worker stopping", "worker", id)
		}
	}
}

// readiness is Config.Readiness, by -ready. A worker that speaks the
// library's IPC also becomes ready by its Listen or Ready, whichever comes
// first.
func (r *runner) readiness(ctx context.Context, w sockshare.WorkerInfo) error {
	ctx, cancel := context.WithTimeoutCause(ctx, readyLimit, errNotReady)
	defer cancel()
	err := r.awaitReady(ctx, w)
	if errors.Is(context.Cause(ctx), errNotReady) {
		switch {
		case r.needIPC:
			return fmt.Errorf("no Listen within %v (a program built with the library is ready once it listens)", readyLimit)
		case r.opts.Ready.Mode == cli.ReadyNotify:
			return fmt.Errorf("no READY=1 on its NOTIFY_SOCKET within %v; for a program that does not speak sd_notify use -ready started or -ready delay:D", readyLimit)
		}
		return fmt.Errorf("not ready within %v", readyLimit)
	}
	return err
}

// errNotReady is the cause of readiness's deadline.
var errNotReady = errors.New("readiness deadline")

func (r *runner) awaitReady(ctx context.Context, w sockshare.WorkerInfo) error {
	r.mu.Lock()
	rc := r.receivers[w.ID]
	online := r.online[w.ID]
	r.mu.Unlock()
	if r.needIPC {
		// The master accepts for the workers: only a program built with
		// the library can take connections, by Listen.
		t := time.NewTimer(ipcGrace)
		defer t.Stop()
		select {
		case <-online:
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			r.noIPC(w.ID)
			return errNoIPC
		}
		<-ctx.Done() // ready by its Listen
		return ctx.Err()
	}
	switch r.opts.Ready.Mode {
	case cli.ReadyStarted:
		return nil
	case cli.ReadyDelay:
		t := time.NewTimer(r.opts.Ready.Delay)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if rc == nil {
		<-ctx.Done() // no socket to wait on: only the library's readiness
		return ctx.Err()
	}
	rc.Expect(w.PID)
	_, err := rc.WaitReady(ctx)
	return err
}

var errNoIPC = errors.New("the worker did not open sockshare's IPC channel")

// noIPC ends the run: under a policy the master dispatches, a worker that
// never speaks IPC would never get a connection.
func (r *runner) noIPC(id int) {
	r.fail(fmt.Errorf("policy %s with %s dispatch hands each connection to a worker over sockshare's IPC channel, and worker %d (%s) does not speak it: only programs built with github.com/sockshare/sockshare can; for any program use -policy shared or -policy reuseport, or -dispatch kernel (rr, sticky)",
		r.m.Policy(), r.m.Dispatch(), id, r.opts.Command[0]))
}

func (r *runner) fail(err error) {
	r.fatalOnce.Do(func() {
		r.mu.Lock()
		r.fatal = err
		stop := r.stop
		r.mu.Unlock()
		if stop != nil {
			stop()
		}
	})
}

func (r *runner) onEvent(e sockshare.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch e.Type {
	case sockshare.EventOnline:
		if ch := r.online[e.WorkerID]; ch != nil {
			close(ch)
			r.online[e.WorkerID] = nil
		}
	case sockshare.EventRestart:
		r.restarts[e.Slot]++
	case sockshare.EventExit:
		r.lastExit[e.Slot] = exitText(e)
		if rc := r.receivers[e.WorkerID]; rc != nil {
			rc.Close()
			delete(r.receivers, e.WorkerID)
		}
		if ch, ok := r.online[e.WorkerID]; ok && ch != nil && r.needIPC && !e.Asked {
			// Gone before it ever spoke IPC.
			go r.noIPC(e.WorkerID)
		}
		delete(r.online, e.WorkerID)
		delete(r.taken, e.WorkerID)
	}
}

// exitText says how a worker ended, for the give-up line.
func exitText(e sockshare.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "worker %d (pid %d) ", e.WorkerID, e.PID)
	switch {
	case e.Signal != nil:
		fmt.Fprintf(&b, "killed by %v", e.Signal)
	default:
		fmt.Fprintf(&b, "exited with status %d", e.ExitCode)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

// serve runs the master until a signal stops it or every slot gives up.
func (r *runner) serve(stdout io.Writer) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r.mu.Lock()
	r.stop = cancel
	r.mu.Unlock()

	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT, sigTTIN, sigTTOU)
	defer signal.Stop(sigs)
	stopReaper := startReaper(r.m, r.log)
	defer stopReaper()

	var metricsSrv *http.Server
	if r.opts.Metrics != "" {
		ln, err := net.Listen("tcp", r.opts.Metrics)
		if err != nil {
			fmt.Fprintf(r.stderr, "sockshare: -metrics %s: %v\n", r.opts.Metrics, err)
			return 1
		}
		metricsSrv = &http.Server{Handler: metrics.New(metrics.SourceFunc(r.snapshot), r.log), ReadHeaderTimeout: 10 * time.Second}
		go metricsSrv.Serve(ln)
		r.log.Info("metrics", "url", "http://"+ln.Addr().String()+"/metrics")
		defer metricsSrv.Close()
	}

	done := make(chan error, 1)
	go func() { done <- r.m.Run(ctx) }()
	go r.announce(ctx, stdout)

	for {
		select {
		case err := <-done:
			return r.finish(err)
		case sig := <-sigs:
			r.onSignal(ctx, sig, cancel)
		}
	}
}

// announce prints the ready line once every worker is ready, and tells
// systemd.
func (r *runner) announce(ctx context.Context, stdout io.Writer) {
	if err := r.m.WaitReady(ctx); err != nil {
		var le *sockshare.ListenError
		if errors.As(err, &le) {
			r.fail(fmt.Errorf("worker %d: %w", le.WorkerID, le))
		}
		return
	}
	var urls []string
	for _, s := range r.bound(r.socks) {
		urls = append(urls, s.String())
	}
	fmt.Fprintf(stdout, "listening on %s policy=%s workers=%d\n", strings.Join(urls, ","), r.m.Policy(), r.m.NumWorkers())
	sdnotify.Notify(fmt.Sprintf("READY=1\nSTATUS=%d workers, policy %s\nMAINPID=%d", r.m.NumWorkers(), r.m.Policy(), os.Getpid()))
}

func (r *runner) onSignal(ctx context.Context, sig os.Signal, cancel context.CancelFunc) {
	switch sig {
	case syscall.SIGHUP:
		r.mu.Lock()
		r.reloads++
		r.mu.Unlock()
		go func() {
			sdnotify.Notify(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", sdnotify.MonotonicUsec()))
			r.log.Info("reloading")
			if err := r.m.Reload(ctx); err != nil {
				r.log.Error("reload failed", "err", err)
			} else {
				r.log.Info("reload done")
			}
			sdnotify.Notify("READY=1")
		}()
	case syscall.SIGTERM, syscall.SIGINT:
		r.log.Info("stopping", "signal", sig.String())
		sdnotify.Notify("STOPPING=1")
		cancel()
	case sigTTIN, sigTTOU:
		n := r.m.NumWorkers()
		if sig == sigTTIN {
			n++
		} else {
			n--
		}
		if n < 1 || n > sockshare.MaxWorkers {
			r.log.Warn("not scaling", "signal", sig.String(), "workers", r.m.NumWorkers())
			return
		}
		go func() {
			if err := r.m.Scale(ctx, n); err != nil {
				r.log.Error("scale failed", "to", n, "err", err)
				return
			}
			sdnotify.Notify(fmt.Sprintf("STATUS=%d workers, policy %s", n, r.m.Policy()))
		}()
	}
}

// finish turns Run's result into the exit status.
func (r *runner) finish(err error) int {
	r.mu.Lock()
	fatal := r.fatal
	r.mu.Unlock()
	switch {
	case fatal != nil:
		fmt.Fprintln(r.stderr, "sockshare:", fatal)
		return 1
	case errors.Is(err, sockshare.ErrAllWorkersFailed):
		r.mu.Lock()
		var last []string
		for slot := range r.m.NumWorkers() {
			last = append(last, fmt.Sprintf("slot %d: %s", slot, r.lastExit[slot]))
		}
		r.mu.Unlock()
		fmt.Fprintf(r.stderr, "sockshare: every worker slot gave up (%s crashed too often); last exits: %s\n", r.opts.Command[0], strings.Join(last, "; "))
		return 1
	case err != nil:
		fmt.Fprintln(r.stderr, err)
		return 1
	}
	return 0
}

// snapshot is the metrics' view of the master.
func (r *runner) snapshot() metrics.Snapshot {
	ws := r.m.Workers()
	ls := r.m.Listeners()
	s := metrics.Snapshot{}
	ready := 0
	for _, w := range ws {
		state := "starting"
		switch w.State {
		case sockshare.StateReady, sockshare.StateListening:
			state = "ready"
			ready++
		case sockshare.StateDisconnecting:
			state = "stopping"
		case sockshare.StateExited:
			state = "exited"
		}
		s.Workers = append(s.Workers, metrics.Worker{ID: w.ID, Slot: w.Slot, PID: w.PID, State: state})
	}
	s.Ready = ready > 0
	r.mu.Lock()
	for slot := range r.m.NumWorkers() {
		s.Slots = append(s.Slots, metrics.Slot{Slot: slot, Restarts: r.restarts[slot]})
	}
	s.Reloads = r.reloads
	r.mu.Unlock()
	for _, l := range ls {
		ml := metrics.Listener{Name: listenerName(l), Policy: string(l.Policy), Dispatch: l.Dispatch, Pending: l.Pending}
		switch {
		case l.Dispatch == sockshare.DispatchKernel:
			ml.Connections = l.Chosen
		case l.Dispatch == sockshare.DispatchMaster && len(ls) == 1:
			// One address: the workers' taken counts are its own. They
			// are summed per slot here, so the counter keeps what a
			// worker took after it exits.
			r.mu.Lock()
			for _, w := range ws {
				r.handed[w.Slot] += w.Taken - r.taken[w.ID]
				r.taken[w.ID] = w.Taken
			}
			for slot := range r.m.NumWorkers() {
				ml.Connections = append(ml.Connections, r.handed[slot])
			}
			r.mu.Unlock()
		}
		s.Listeners = append(s.Listeners, ml)
	}
	return s
}

// listenerName labels an address in the metrics: its URL.
func listenerName(l sockshare.ListenerInfo) string {
	return l.Network + "://" + l.Addr
}
