//go:build (!unix || solaris) && !windows

package reuse

import (
	"fmt"
	"syscall"
)

func platformControls() []controlFunc {
	return []controlFunc{refuse}
}

// refuse fails every socket: go-reuseport cannot set SO_REUSEPORT here
// (x/sys/unix does not define it for illumos and Solaris, and plan9, js and
// wasip1 have no such option).
func refuse(network, address string, _ syscall.RawConn) error {
	return fmt.Errorf("reuse: share %s %s: %w", network, address, ErrUnsupported)
}
