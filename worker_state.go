package sockshare

import (
	"time"

	"github.com/sockshare/sockshare/policy"
)

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
	Taken    uint64 // connections the master handed and the worker's Accept took (rr, leastconn)
	Active   int    // connections taken and not yet closed (leastconn)
	Inflight int    // connections handed, not yet taken (rr, leastconn)
	// Chosen counts, under kernel dispatch, the connections (datagrams) the
	// kernel's program sent to this worker's slot since it listened; Open
	// is its open connections under kernel leastconn, as it counts them.
	Chosen   uint64
	Open     int64
	Restarts int // restarts of this slot so far
	Started  time.Time
}

// ListenerInfo is a snapshot of one shared address, from Master.Listeners.
// The counters are those of the master's dispatcher, so they are zero under
// shared, reuseport and kernel dispatch, where workers accept for
// themselves, except for a leaving slot's queued connections, which the
// master hands to the others.
type ListenerInfo struct {
	Network string
	Addr    string // as bound: port 0 resolved
	// Requested is the address as Listen or Config.Sockets asked for it.
	Requested string
	// Pinned: from Config.Sockets, served until the master stops.
	Pinned bool
	Policy policy.Name
	// Dispatch is who chooses the worker of each connection:
	// DispatchMaster or DispatchKernel; "" for shared and reuseport.
	Dispatch string
	// Chosen is, under kernel dispatch, how many connections (datagrams)
	// the kernel's program sent to each slot so far: the spread, without
	// the master seeing a connection.
	Chosen []uint64
	// Open is, under kernel leastconn, each slot's open connections as
	// its workers count them for the program.
	Open []int64

	Accepted     uint64 // connections the master accepted
	Taken        uint64 // connections a worker's Accept returned
	Returned     uint64 // connections a worker handed back unserved
	Redispatched uint64 // connections handed again (worker died or handed back)
	Dropped      uint64 // connections closed unserved at shutdown
	Pending      int    // waiting for room in a worker's window
	Inflight     int    // handed, not yet taken
}
