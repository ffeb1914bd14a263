//go:build !linux && !freebsd && !darwin && !openbsd && !windows

package reuse

import (
	"fmt"
	"runtime"
	"sync"
)

var (
	probeOnce sync.Once
	probed    Capabilities
)

// Probe reports what this kernel does with a reuseport group. The first call
// tries to form a throwaway group of two UDP sockets on 127.0.0.1; the result
// is cached. Whether this kernel balances the group is not known, so Balances
// is false.
func Probe() Capabilities {
	probeOnce.Do(func() { probed = probeGroup() })
	return probed
}

func probeGroup() Capabilities {
	first, second, err := bindPair()
	if err != nil {
		return Capabilities{Note: fmt.Sprintf("%s: sockets cannot share an address: %v", runtime.GOOS, err)}
	}
	first.Close()
	second.Close()
	return Capabilities{
		ReusePort: true,
		Note:      runtime.GOOS + ": SO_REUSEPORT binds but balancing is unknown here; assume every connection goes to one socket",
	}
}
