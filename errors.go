package sockshare

import (
	"errors"

	"github.com/sockshare/sockshare/internal/ipc"
	"github.com/sockshare/sockshare/internal/worker"
)

var (
	// ErrUnsupported is returned where this platform cannot run a master
	// (no descriptor passing). It matches errors.ErrUnsupported.
	ErrUnsupported = ipc.ErrUnsupported
	// ErrNotWorker is returned by worker-only calls outside a worker.
	ErrNotWorker = errors.New("sockshare: not running as a worker")
	// ErrMasterGone is returned by worker calls once the master is gone.
	ErrMasterGone = worker.ErrMasterGone
	// ErrBadConfig is wrapped by every configuration error of NewMaster.
	ErrBadConfig = errors.New("sockshare: bad config")
	// ErrPolicyConflict is returned by a worker's Listen for an address the
	// master already serves under another policy.
	ErrPolicyConflict = ipc.ErrPolicyConflict
	// ErrNetwork is wrapped when a network name does not fit the call
	// (for example ListenPacket("tcp", ...)).
	ErrNetwork = ipc.ErrNetwork
	// ErrStopped is returned by WaitReady when Run has returned.
	ErrStopped = errors.New("sockshare: the master has stopped")
	// ErrAllWorkersFailed is returned by Run when every slot was given up.
	ErrAllWorkersFailed = errors.New("sockshare: every worker slot was given up")
	// ErrWorkerEnv is returned by NewMaster, Listen and ListenPacket in a
	// process whose worker markers (SOCKSHARE_WORKER_*) are present but
	// unusable: it was started as a worker, but not by a master it can
	// reach, so it must neither start workers of its own nor bind.
	ErrWorkerEnv = ipc.ErrWorkerEnv
	// ErrUnknownWorker is returned by Master.Send for an id that is not
	// running.
	ErrUnknownWorker = errors.New("sockshare: no such worker")
)

// ListenError is a worker's Listen or ListenPacket that failed in the
// master, as Master.WaitReady reports it. errors.Is sees through it to the
// cause (syscall.EADDRINUSE, ErrPolicyConflict, ...).
type ListenError struct {
	WorkerID int
	Network  string
	Addr     string // as the worker asked for it
	Err      error
}

func (e *ListenError) Error() string { return "listen " + e.Addr + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *ListenError) Unwrap() error { return e.Err }
