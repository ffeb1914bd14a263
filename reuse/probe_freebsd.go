package reuse

// FreeBSD balances a group whose members set SO_REUSEPORT_LB (FreeBSD 12+),
// which go-reuseport does.
var thisOS = groupFacts{
	cannotBind: "could not form a SO_REUSEPORT_LB group on 127.0.0.1 (FreeBSD 12+ needed)",
	balances:   true,
}
