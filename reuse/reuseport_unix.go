//go:build unix && !solaris

package reuse

import (
	"fmt"
	"syscall"

	"github.com/libp2p/go-reuseport"
)

// setReusePort sets SO_REUSEADDR and SO_REUSEPORT (and SO_REUSEPORT_LB on
// FreeBSD) through go-reuseport.
func setReusePort(network, address string, c syscall.RawConn) error {
	if err := reuseport.Control(network, address, c); err != nil {
		return fmt.Errorf("reuse: set SO_REUSEPORT on %s %s: %w", network, address, err)
	}
	return nil
}
