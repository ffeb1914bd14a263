package policy

import "net/netip"

// Candidate is what a Picker knows about one worker when it chooses where
// the next connection goes.
type Candidate struct {
	// Slot is the worker's stable slot index; pickers may use it to keep
	// a fixed rotation order.
	Slot int
	// Inflight counts connections handed to the worker that it has not yet
	// taken from its listener.
	Inflight int
	// Active counts connections the worker has taken and not yet closed.
	// Only pickers that need it make workers report closes.
	Active int
	// Credit is how many more connections the worker may be handed now
	// (its window less Inflight). A picker never picks a candidate with
	// Credit <= 0.
	Credit int
}

// Picker chooses a worker for each connection under a dispatching policy.
// Implementations are not safe for concurrent use; the dispatcher calls them
// under its own lock.
type Picker interface {
	// Pick returns the index in cands of the worker to hand the next
	// connection to, or -1 when no candidate has credit.
	Pick(cands []Candidate) int
	// TracksActive reports whether the picker reads Candidate.Active, so
	// that workers must report every close.
	TracksActive() bool
}

// ClientPicker is a Picker that chooses by the client's address (sticky).
// A dispatcher that knows the address of the connection it places calls
// PickClient; Pick is for when it does not.
type ClientPicker interface {
	Picker
	// PickClient is Pick for a connection from client. It may return -1
	// while the client's worker has no credit, to keep the client on it.
	PickClient(client netip.Addr, cands []Candidate) int
}
