package sockshare

import (
	"context"
	"fmt"
	"github.com/sockshare/sockshare/internal/ipc"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"time"

	"github.com/sockshare/sockshare/policy"
)

// MaxWorkers bounds Config.Workers; more is treated as a mistake.
const MaxWorkers = 1024

// Config configures a Master. The zero value is usable: NumCPU workers
// re-running this executable under the policy from SOCKSHARE_POLICY, or rr.
type Config struct {
	// Workers is the number of worker slots. Default runtime.NumCPU().
	// Negative or above MaxWorkers is an error.
	Workers int
	// Policy names the sharing policy (see package policy). Empty means
	// the SOCKSHARE_POLICY environment variable, then rr.
	Policy string
	// Dispatch says who chooses the worker of each connection under the
	// dispatching policies (rr, leastconn, sticky): "master" (it accepts
	// and hands each connection over), "kernel" (a BPF program chooses
	// the slot's socket at SYN time; Linux, root or CAP_BPF and
	// CAP_NET_ADMIN) or "auto" (the kernel where it works). Empty means
	// the SOCKSHARE_DISPATCH environment variable, then auto. "kernel"
	// where it cannot work makes NewMaster fail with an error matching
	// errors.ErrUnsupported that names the reason. It means nothing to
	// shared and reuseport.
	Dispatch string
	// Program is the worker executable. Default: os.Executable().
	Program string
	// Args are the worker's arguments, without the program name. Nil
	// means os.Args[1:]; an empty non-nil slice means none.
	Args []string
	// Env is the worker's environment. Nil means os.Environ(). The
	// master adds its own markers and, see WorkerGOMAXPROCS, GOMAXPROCS.
	Env []string
	// Dir is the worker's working directory; empty means the master's.
	Dir string
	// Stdout and Stderr receive the workers' output. Nil means the
	// master's own standard output and error.
	Stdout, Stderr io.Writer
	// Logger receives the master's own reports (warnings such as a policy
	// falling back, crashes, give-ups). Nil means slog.Default(); to
	// silence them, pass slog.New(slog.DiscardHandler).
	Logger *slog.Logger

	// ShutdownTimeout bounds graceful shutdown and disconnects: after it,
	// workers still running are killed. Default 10s.
	ShutdownTimeout time.Duration

	// OnEvent, if set, receives every Event. Calls are serialised, in
	// the order things happened, on goroutines of the master; the master
	// holds no lock of its own during the call, so OnEvent may call
	// Workers and Send, but it must not block for long: it delays the
	// next event and, for some events, the worker's IPC.
	OnEvent func(Event)
	// OnMessage, if set, receives every message a worker sends with
	// Send. It runs on that worker's IPC reader goroutine and must not
	// block: handoffs to that worker wait behind it.
	OnMessage func(workerID int, payload []byte)

	// WorkerGOMAXPROCS sets GOMAXPROCS in each worker's environment when
	// that environment does not set it already. 0 means
	// max(1, NumCPU/Workers), so that N workers do not oversubscribe the
	// cores; a negative value leaves the Go default.
	WorkerGOMAXPROCS int

	// Window is how many handed connections a worker may have not yet
	// accepted, under rr and leastconn. Default 64.
	Window int
	// MaxPending bounds the connections the master holds while every
	// worker's window is full; then it stops accepting. Default 1024.
	MaxPending int
	// UDPSteering attaches a cBPF program to reuseport UDP groups that
	// spreads datagrams evenly over the slots, one flow included, at the
	// cost of flow affinity. Linux only.
	UDPSteering bool

	// RestartDelay is the first wait before a crashed slot restarts; it
	// doubles with each crash up to MaxRestartDelay, and is reset once a
	// worker stays up for StableAfter. Defaults 100ms, 10s, 30s.
	RestartDelay, MaxRestartDelay, StableAfter time.Duration
	// MaxCrashes crashes of one slot within CrashWindow give the slot up.
	// Defaults 5 and 60s.
	MaxCrashes  int
	CrashWindow time.Duration
	// ReloadParallel is how many slots Reload replaces at a time.
	// Default 1.
	ReloadParallel int
	// ReadyTimeout bounds the time from start to readiness (Ready, or the
	// first Listen served); a worker that misses it is killed and counted
	// as a crash. Default 30s; negative disables it.
	ReadyTimeout time.Duration

	// Sockets are addresses the master opens before any worker starts and
	// serves until it stops, whether or not a worker listens on them, so
	// that programs which know nothing of sockshare can be workers: each
	// worker inherits them as descriptors 3, 4, ... in this order (see
	// Socket), and its IPC channel comes after them. A worker built with
	// this package may also Listen on a Socket's network and address and
	// gets the same group.
	Sockets []Socket
	// WorkerEnv, if set, returns entries to add to the environment of the
	// worker about to start (id, slot). It runs before the process starts,
	// on the goroutine that starts it; the master's own markers win.
	WorkerEnv func(id, slot int) []string
	// Readiness, if set, is one more way for a worker to become ready,
	// beside Ready and its first Listen served: the master calls it on a
	// goroutine of its own once the worker has started. It returns nil when
	// the worker is ready; an error kills the worker, and the exit counts
	// as a crash with that error. ctx ends when the worker becomes ready
	// some other way or exits.
	Readiness func(ctx context.Context, w WorkerInfo) error
}

// Socket is an address a Master opens before its workers start
// (Config.Sockets). Every worker inherits it: the one socket under shared,
// its slot's socket under reuseport and under kernel dispatch. Under rr,
// leastconn and sticky with master dispatch there is no socket to inherit
// (the master accepts); the descriptor is then missing from the list
// (see Socket.Inherited), and workers must reach the address with Listen.
type Socket struct {
	Network string // tcp, tcp4, tcp6, udp, udp4 or udp6
	Address string // host:port, as for Listen; port 0 picks one
	// File, if set, is a socket already bound to Address (for example
	// passed by systemd's socket activation), which the master serves
	// instead of binding: a listening socket for tcp, a bound one for udp.
	// The master takes a duplicate; the caller may close File. Under
	// reuseport it is slot 0's socket and must have SO_REUSEPORT set (the
	// other slots bind beside it); kernel dispatch cannot use it.
	File *os.File
}

// Inherited reports whether workers inherit a descriptor for sockets
// served under policy p with the given dispatch (DispatchMaster or
// DispatchKernel): false where the master accepts for them.
func (s Socket) Inherited(p policy.Name, dispatch string) bool {
	if ipc.PacketNet(s.Network) {
		return true // a datagram socket is always shared or per slot
	}
	return !p.Dispatches() || dispatch == DispatchKernel
}

func (c Config) withDefaults() (Config, policy.Name, error) {
	bad := func(format string, args ...any) (Config, policy.Name, error) {
		return c, "", fmt.Errorf("%w: "+format, append([]any{ErrBadConfig}, args...)...)
	}
	if c.Workers == 0 {
		c.Workers = runtime.NumCPU()
	}
	if c.Workers < 0 || c.Workers > MaxWorkers {
		return bad("workers must be between 1 and %d, got %d", MaxWorkers, c.Workers)
	}
	pol, err := policy.Resolve(c.Policy)
	if err != nil {
		return c, "", fmt.Errorf("%w: %w", ErrBadConfig, err)
	}
	if c.Program == "" {
		exe, err := os.Executable()
		if err != nil {
			return bad("cannot find the program to run as workers: %v", err)
		}
		c.Program = exe
		if c.Args == nil {
			c.Args = os.Args[1:]
		}
	}
	if c.Env == nil {
		c.Env = os.Environ()
	}
	if c.Stdout == nil {
		c.Stdout = os.Stdout
	}
	if c.Stderr == nil {
		c.Stderr = os.Stderr
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.ShutdownTimeout, 10*time.Second)
	def(&c.RestartDelay, 100*time.Millisecond)
	def(&c.MaxRestartDelay, 10*time.Second)
	def(&c.StableAfter, 30*time.Second)
	def(&c.CrashWindow, time.Minute)
	def(&c.ReadyTimeout, 30*time.Second)
	if c.MaxCrashes == 0 {
		c.MaxCrashes = 5
	}
	for _, f := range []struct {
		name string
		d    time.Duration
	}{
		{"ShutdownTimeout", c.ShutdownTimeout}, {"RestartDelay", c.RestartDelay}, {"MaxRestartDelay", c.MaxRestartDelay},
		{"StableAfter", c.StableAfter}, {"CrashWindow", c.CrashWindow},
	} {
		if f.d < 0 {
			return bad("%s must not be negative, got %v", f.name, f.d)
		}
	}
	if c.MaxCrashes < 0 {
		return bad("MaxCrashes must not be negative, got %d", c.MaxCrashes)
	}
	if c.Window < 0 || c.MaxPending < 0 || c.ReloadParallel < 0 {
		return bad("Window, MaxPending and ReloadParallel must not be negative")
	}
	for i, s := range c.Sockets {
		if !ipc.StreamNet(s.Network) && !ipc.PacketNet(s.Network) {
			return bad("Sockets[%d]: network %q (want tcp, tcp4, tcp6, udp, udp4 or udp6)", i, s.Network)
		}
		if _, _, err := net.SplitHostPort(s.Address); err != nil {
			return bad("Sockets[%d]: address %q: %v", i, s.Address, err)
		}
		for _, o := range c.Sockets[:i] {
			if o.Network == s.Network && o.Address == s.Address {
				return bad("Sockets[%d]: %s %s is listed twice", i, s.Network, s.Address)
			}
		}
	}
	if c.WorkerGOMAXPROCS == 0 {
		c.WorkerGOMAXPROCS = max(1, runtime.NumCPU()/c.Workers)
	}
	return c, pol, nil
}
