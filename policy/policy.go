package policy

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
)

// Name is a canonical policy name.
type Name string

// The policies. Their string values are the names users type.
const (
	Shared    Name = "shared"
	RR        Name = "rr"
	LeastConn Name = "leastconn"
	ReusePort Name = "reuseport"
	Sticky    Name = "sticky"
)

// Default is the policy used when neither the configuration nor the
// environment names one. It is rr, as in Node.js's cluster module.
const Default = RR

// EnvVar is the environment variable read by FromEnv when a configuration
// leaves the policy empty.
const EnvVar = "SOCKSHARE_POLICY"

// ErrUnknownPolicy is matched (with errors.Is) by every error Parse returns
// for a name it does not know.
var ErrUnknownPolicy = errors.New("unknown policy")

// UnknownPolicyError reports a policy name that is not valid. Its message
// lists the valid names.
type UnknownPolicyError struct {
	Name string // the name as given
}

func (e *UnknownPolicyError) Error() string {
	return fmt.Sprintf("unknown policy %q (valid: %s)", e.Name, strings.Join(validNames(), ", "))
}

// Is makes errors.Is(err, ErrUnknownPolicy) true.
func (e *UnknownPolicyError) Is(target error) bool { return target == ErrUnknownPolicy }

// info describes one policy. A new policy adds one entry to registry.
type info struct {
	name    Name
	aliases []string
	// dispatch is non-nil for policies where the master accepts and hands
	// each connection to a worker it picks.
	dispatch func() Picker
	order    int // position in the list of valid names
}

var registry = map[Name]info{
	Shared:    {name: Shared, aliases: []string{"none"}, order: 0},
	RR:        {name: RR, aliases: []string{"round-robin"}, dispatch: NewRoundRobin, order: 1},
	LeastConn: {name: LeastConn, dispatch: NewLeastConn, order: 2},
	ReusePort: {name: ReusePort, order: 3},
	Sticky:    {name: Sticky, dispatch: NewSticky, order: 4},
}

func validNames() []string {
	infos := make([]info, 0, len(registry))
	for _, in := range registry {
		infos = append(infos, in)
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].order < infos[j].order })
	names := make([]string, len(infos))
	for i, in := range infos {
		names[i] = string(in.name)
	}
	return names
}

// Names returns the canonical policy names in documentation order.
func Names() []Name {
	v := validNames()
	out := make([]Name, len(v))
	for i, s := range v {
		out[i] = Name(s)
	}
	return out
}

// Parse returns the canonical policy for s, accepting aliases and ignoring
// case and surrounding space. An empty or unknown name is an
// *UnknownPolicyError.
func Parse(s string) (Name, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	for _, in := range registry {
		if string(in.name) == t {
			return in.name, nil
		}
		for _, a := range in.aliases {
			if a == t {
				return in.name, nil
			}
		}
	}
	return "", &UnknownPolicyError{Name: s}
}

// Resolve returns the policy to use for a configured name: s itself when it
// is not empty, otherwise the value of SOCKSHARE_POLICY, otherwise Default.
func Resolve(s string) (Name, error) {
	if strings.TrimSpace(s) == "" {
		s = os.Getenv(EnvVar)
		if strings.TrimSpace(s) == "" {
			return Default, nil
		}
		n, err := Parse(s)
		if err != nil {
			return "", fmt.Errorf("%s: %w", EnvVar, err)
		}
		return n, nil
	}
	return Parse(s)
}

// String returns the canonical name.
func (n Name) String() string { return string(n) }

// Valid reports whether n is a canonical policy name.
func (n Name) Valid() bool { _, ok := registry[n]; return ok }

// Dispatches reports whether the master accepts connections under n and
// hands them to workers (rr, leastconn), as opposed to workers accepting
// themselves (shared, reuseport).
func (n Name) Dispatches() bool { return registry[n].dispatch != nil }

// NewPicker returns a fresh picker for a dispatching policy, or nil for a
// policy that does not dispatch.
func (n Name) NewPicker() Picker {
	in, ok := registry[n]
	if !ok || in.dispatch == nil {
		return nil
	}
	return in.dispatch()
}

// ForPacket returns the policy used for a datagram socket when n is asked
// for and the master would have to dispatch. Datagram sockets have no
// accept, so a dispatching policy falls back to Shared, as Node.js does,
// except Sticky, which falls back to ReusePort (the kernel's hash of the
// 4-tuple keeps a flow on one socket); fellBack says that it did. Under
// kernel dispatch sticky applies to datagrams as it is.
func (n Name) ForPacket() (p Name, fellBack bool) {
	switch {
	case n == Sticky:
		return ReusePort, true
	case n.Dispatches():
		return Shared, true
	}
	return n, false
}
