//go:build darwin || openbsd

package reuse

// These kernels accept the second bind but do not balance the group.
var thisOS = groupFacts{
	cannotBind: "could not form a SO_REUSEPORT group on 127.0.0.1",
	degraded:   "SO_REUSEPORT binds but does not balance; every connection goes to one socket",
}
