package ipc

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/sockshare/sockshare/passfd"
)

// The rest of the contract between a master and its workers, beside the
// messages: the environment markers that make a process a worker, the
// errors that cross the channel, and how a message is sent.

// Environment markers of a worker. The worker side reads and removes them
// at initialisation, before user code runs; the master never lets its own
// through to a worker.
const (
	EnvPrefix    = "SOCKSHARE_WORKER"
	EnvWorkerID  = "SOCKSHARE_WORKER_ID"
	EnvSlot      = "SOCKSHARE_WORKER_SLOT"
	EnvIPCFD     = "SOCKSHARE_WORKER_IPC_FD"
	EnvMasterPID = "SOCKSHARE_WORKER_MASTER_PID"
	// EnvExecShim marks an exec shim (see sockshare.EnvExecShim): the
	// worker side leaves the markers for the program the shim runs.
	EnvExecShim = "SOCKSHARE_EXEC_SHIM"
)

// Markers are every marker variable.
var Markers = []string{EnvWorkerID, EnvSlot, EnvIPCFD, EnvMasterPID}

// The sentinels both sides use; package sockshare exports them.
var (
	ErrUnsupported    = fmt.Errorf("sockshare: %w", errors.ErrUnsupported)
	ErrPolicyConflict = errors.New("address already shared under another policy")
	ErrNetwork        = errors.New("unsupported network")
	ErrWorkerEnv      = errors.New("sockshare: malformed worker environment")
)

// StreamNet and PacketNet say whether a network name is one that Listen
// and ListenPacket serve.
func StreamNet(n string) bool { return n == "tcp" || n == "tcp4" || n == "tcp6" }
func PacketNet(n string) bool { return n == "udp" || n == "udp4" || n == "udp6" }

// RemoteError is an error that happened in the master on a worker's
// behalf, carried over IPC as text, errno and flags. It unwraps to the
// errno, so errors.Is(err, syscall.EADDRINUSE) holds in the worker, and the
// flags make errors.Is match the sentinels the master's error matched.
type RemoteError struct {
	Msg   string
	Errno syscall.Errno
	Flags uint32 // FlagPolicyConflict, FlagUnsupported
}

func (e *RemoteError) Error() string { return e.Msg }

func (e *RemoteError) Unwrap() error {
	if e.Errno == 0 {
		return nil
	}
	return e.Errno
}

func (e *RemoteError) Is(target error) bool {
	switch target {
	case ErrPolicyConflict:
		return e.Flags&FlagPolicyConflict != 0
	case ErrUnsupported, errors.ErrUnsupported:
		return e.Flags&FlagUnsupported != 0
	}
	return false
}

// ErrorFlags returns the flags that carry err's sentinels to a worker.
func ErrorFlags(err error) uint32 {
	var f uint32
	if errors.Is(err, ErrPolicyConflict) {
		f |= FlagPolicyConflict
	}
	if errors.Is(err, errors.ErrUnsupported) {
		f |= FlagUnsupported
	}
	return f
}

// Send encodes m and sends it over the IPC socket with fds, which stay
// the caller's. Master and worker both send this way. A message that does
// not encode is the caller's mistake, reported as encodeErr; sendErr is the
// socket's.
func Send(conn *net.UnixConn, m *Msg, fds []int) (encodeErr, sendErr error) {
	var buf [256]byte
	b, err := Append(buf[:0], m)
	if err != nil {
		return err, nil
	}
	return nil, passfd.Send(conn, b, fds)
}
