//go:build darwin || openbsd

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
// forms a throwaway group of two UDP sockets on 127.0.0.1; the result is
// cached. This kernel binds the group but does not balance it.
func Probe() Capabilities {
	probeOnce.Do(func() { probed = probeGroup() })
	return probed
}

func probeGroup() Capabilities {
	first, second, err := bindPair()
	if err != nil {
		return Capabilities{Note: fmt.Sprintf("%s: could not form a SO_REUSEPORT group on 127.0.0.1: %v", runtime.GOOS, err)}
	}
	first.Close()
	second.Close()
	return Capabilities{
		ReusePort: true,
		Note:      runtime.GOOS + ": SO_REUSEPORT binds but does not balance; every connection goes to one socket",
	}
}
