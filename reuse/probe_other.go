//go:build !linux && !freebsd && !darwin && !openbsd && !windows

package reuse

// Whether these kernels balance a group is not known, so Balances is false.
var thisOS = groupFacts{
	cannotBind: "sockets cannot share an address",
	degraded:   "SO_REUSEPORT binds but balancing is unknown here; assume every connection goes to one socket",
}
