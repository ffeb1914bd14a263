package sockshare

import (
	"fmt"
	"os"
	"time"

	"github.com/sockshare/sockshare/policy"
)

// EventType says what happened to a worker.
type EventType int

// Event types, in the order they usually happen to one worker.
const (
	EventFork        EventType = iota + 1 // the process was started
	EventOnline                           // the worker's IPC said hello
	EventListening                        // a Listen/ListenPacket was served: Network, Addr, Policy
	EventListenError                      // a Listen failed in the master: Network, Addr, Err
	EventReady                            // the worker called Ready (or its first Listen was served)
	EventDisconnect                       // the master asked the worker to drain and exit
	EventExit                             // the process ended: ExitCode, Signal, Asked
	EventRestart                          // a crashed slot is scheduled to start again after Delay
	EventGiveUp                           // a slot crashed too often and is not restarted: Err
	EventFallback                         // a policy does not apply to a network and another was used: Policy, Err
)

var eventNames = map[EventType]string{
	EventFork: "fork", EventOnline: "online", EventListening: "listening",
	EventListenError: "listen-error", EventReady: "ready", EventDisconnect: "disconnect",
	EventExit: "exit", EventRestart: "restart", EventGiveUp: "give-up", EventFallback: "fallback",
}

func (t EventType) String() string {
	if s, ok := eventNames[t]; ok {
		return s
	}
	return fmt.Sprintf("event(%d)", int(t))
}

// Event is one thing that happened to a worker.
type Event struct {
	Type     EventType
	Time     time.Time
	WorkerID int // monotonic, never reused
	Slot     int // stable index 0..Workers-1
	PID      int

	Network string      // EventListening, EventListenError, EventFallback
	Addr    string      // the real address, port resolved
	Policy  policy.Name // the policy serving the address

	ExitCode int       // EventExit: exit status, -1 when killed by a signal
	Signal   os.Signal // EventExit: the signal that killed it, or nil
	Asked    bool      // EventExit: the master asked for this exit (shutdown, disconnect, reload)

	Delay time.Duration // EventRestart: wait before the restart
	Err   error         // EventListenError, EventGiveUp, EventFallback, and EventExit after a protocol error
}

func (e Event) String() string {
	s := fmt.Sprintf("%s worker=%d slot=%d pid=%d", e.Type, e.WorkerID, e.Slot, e.PID)
	switch e.Type {
	case EventListening, EventListenError, EventFallback:
		s += fmt.Sprintf(" %s %s policy=%s", e.Network, e.Addr, e.Policy)
	case EventExit:
		if e.Signal != nil {
			s += fmt.Sprintf(" signal=%v", e.Signal)
		} else {
			s += fmt.Sprintf(" code=%d", e.ExitCode)
		}
		s += fmt.Sprintf(" asked=%v", e.Asked)
	case EventRestart:
		s += fmt.Sprintf(" delay=%v", e.Delay)
	}
	if e.Err != nil {
		s += " err=" + e.Err.Error()
	}
	return s
}
