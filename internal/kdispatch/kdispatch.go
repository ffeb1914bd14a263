package kdispatch

import (
	"errors"
	"fmt"
)

// errUnsupported is matched (errors.Is) by every error that means kernel
// dispatch cannot work here: another OS, missing privileges, an old
// kernel, or an MPTCP socket. It matches [errors.ErrUnsupported] too.
var errUnsupported = fmt.Errorf("kernel dispatch %w", errors.ErrUnsupported)

// MaxSlots is the largest number of slots a [Group] takes. It is the
// master's own limit on workers; the leastconn program loops over the
// slots, and the verifier's cost grows with the count.
const MaxSlots = 1024

// Mode is the dispatch rule the kernel applies to a [Group].
type Mode int

// The modes.
const (
	// RoundRobin rotates over the live slots, exact by count.
	RoundRobin Mode = iota + 1
	// Sticky sends each client IP to one slot through a Maglev table.
	Sticky
	// LeastConn picks the live slot with the fewest open connections, as
	// the workers report them through [ConnCounts].
	LeastConn
)

// String returns the mode's name: rr, sticky or leastconn.
func (m Mode) String() string {
	switch m {
	case RoundRobin:
		return "rr"
	case Sticky:
		return "sticky"
	case LeastConn:
		return "leastconn"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

func (m Mode) valid() bool { return m >= RoundRobin && m <= LeastConn }
