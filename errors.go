package sockshare

import (
	"errors"
	"fmt"
	"github.com/sockshare/sockshare/internal/ipc"
	"syscall"
)

var (
	// ErrUnsupported is returned where this platform cannot run a master
	// (no descriptor passing). It matches errors.ErrUnsupported.
	ErrUnsupported = fmt.Errorf("sockshare: %w", errors.ErrUnsupported)
	// ErrNotWorker is returned by worker-only calls outside a worker.
	ErrNotWorker = errors.New("sockshare: not running as a worker")
	// ErrMasterGone is returned by worker calls once the master is gone.
	ErrMasterGone = errors.New("sockshare: master is gone")
	// ErrBadConfig is wrapped by every configuration error of NewMaster.
	ErrBadConfig = errors.New("sockshare: bad config")
	// ErrPolicyConflict is returned by a worker's Listen for an address the
	// master already serves under another policy.
	ErrPolicyConflict = errors.New("address already shared under another policy")
	// ErrNetwork is wrapped when a network name does not fit the call
	// (for example ListenPacket("tcp", ...)).
	ErrNetwork = errors.New("unsupported network")
	// ErrStopped is returned by WaitReady when Run has returned.
	ErrStopped = errors.New("sockshare: the master has stopped")
	// ErrAllWorkersFailed is returned by Run when every slot was given up.
	ErrAllWorkersFailed = errors.New("sockshare: every worker slot was given up")
	// ErrWorkerEnv is returned by NewMaster, Listen and ListenPacket in a
	// process whose worker markers (SOCKSHARE_WORKER_*) are present but
	// unusable: it was started as a worker, but not by a master it can
	// reach, so it must neither start workers of its own nor bind.
	ErrWorkerEnv = errors.New("sockshare: malformed worker environment")
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

// remoteError is an error that happened in the master on a worker's behalf,
// carried over IPC as text, errno and flags. It unwraps to the errno, so
// errors.Is(err, syscall.EADDRINUSE) holds in the worker, and the flags make
// errors.Is match the sentinels the master's error matched.
type remoteError struct {
	msg   string
	errno syscall.Errno
	flags uint32 // ipc.FlagPolicyConflict, ipc.FlagUnsupported
}

func (e *remoteError) Error() string { return e.msg }

func (e *remoteError) Unwrap() error {
	if e.errno == 0 {
		return nil
	}
	return e.errno
}

func (e *remoteError) Is(target error) bool {
	switch target {
	case ErrPolicyConflict:
		return e.flags&ipc.FlagPolicyConflict != 0
	case ErrUnsupported, errors.ErrUnsupported:
		return e.flags&ipc.FlagUnsupported != 0
	}
	return false
}

// remoteFlags returns the ipc flags that carry err's sentinels to a worker.
func remoteFlags(err error) uint32 {
	var f uint32
	if errors.Is(err, ErrPolicyConflict) {
		f |= ipc.FlagPolicyConflict
	}
	if errors.Is(err, errors.ErrUnsupported) {
		f |= ipc.FlagUnsupported
	}
	return f
}
