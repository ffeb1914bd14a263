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
