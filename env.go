package sockshare

// Environment markers of a worker. The package reads and removes them at
// initialisation, before user code runs.
const (
	envPrefix    = "SOCKSHARE_WORKER"
	envWorkerID  = "SOCKSHARE_WORKER_ID"
	envSlot      = "SOCKSHARE_WORKER_SLOT"
	envIPCFD     = "SOCKSHARE_WORKER_IPC_FD"
	envMasterPID = "SOCKSHARE_WORKER_MASTER_PID"
)

var allMarkers = []string{envWorkerID, envSlot, envIPCFD, envMasterPID}

// EnvExecShim, set in a process's environment, tells this package that
// the process is an exec shim (cmd/sockshare's, which sets LISTEN_PID and
// execs a worker command): it leaves the worker markers in the environment
// for the program the shim runs, and the process is not a worker itself.
// The shim removes the variable before it execs.
const EnvExecShim = "SOCKSHARE_EXEC_SHIM"
