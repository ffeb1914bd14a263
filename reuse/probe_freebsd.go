package reuse

import (
	"fmt"
	"sync"
)

var (
	probeOnce sync.Once
	probed    Capabilities
)

// Probe reports what this kernel does with a reuseport group. The first call
// forms a throwaway group of two UDP sockets on 127.0.0.1, which needs
// SO_REUSEPORT_LB (FreeBSD 12+); the result is cached.
func Probe() Capabilities {
	probeOnce.Do(func() { probed = probeGroup() })
	return probed
}

func probeGroup() Capabilities {
	first, second, err := bindPair()
	if err != nil {
		return Capabilities{Note: fmt.Sprintf("freebsd: could not form a SO_REUSEPORT_LB group on 127.0.0.1 (FreeBSD 12+ needed): %v", err)}
	}
	first.Close()
	second.Close()
	return Capabilities{ReusePort: true, Balances: true}
}
