package sockshare

import "github.com/sockshare/sockshare/internal/ipc"

// EnvExecShim, set in a process's environment, tells this package that
// the process is an exec shim (cmd/sockshare's, which sets LISTEN_PID and
// execs a worker command): it leaves the worker markers in the environment
// for the program the shim runs, and the process is not a worker itself.
// The shim removes the variable before it execs.
const EnvExecShim = ipc.EnvExecShim
