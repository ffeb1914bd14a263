package sockshare

import "time"

// WorkerState is where a worker is in its life.
type WorkerState int

// Worker states.
const (
	StateStarting      WorkerState = iota + 1 // forked, not yet online
	StateOnline                               // IPC hello received
	StateListening                            // at least one Listen served
	StateReady                                // Ready called or first Listen served
	StateDisconnecting                        // asked to drain and exit
	StateExited                               // the process ended
)

func (s WorkerState) String() string {
	switch s {
	case StateStarting:
		return "starting"
	case StateOnline:
		return "online"
	case StateListening:
		return "listening"
	case StateReady:
		return "ready"
	case StateDisconnecting:
		return "disconnecting"
	case StateExited:
		return "exited"
	}
	return "unknown"
}

// WorkerInfo is a snapshot of one worker, from Master.Workers.
type WorkerInfo struct {
	ID       int
	Slot     int
	PID      int
	State    WorkerState
	Accepted uint64 // connections the master handed and the worker took (rr, leastconn)
	Active   int    // connections taken and not yet closed (leastconn)
	Inflight int    // connections handed, not yet taken (rr, leastconn)
	Restarts int    // restarts of this slot so far
	Started  time.Time
}
