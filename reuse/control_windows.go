package reuse

import (
	"fmt"
	"syscall"
)

func platformControls() []controlFunc {
	return []controlFunc{refuseReuseAddr}
}

// refuseReuseAddr fails every socket: Windows has only SO_REUSEADDR, which lets
// any process, of any user, bind the same port and take its traffic. Sharing
// that way would be a silent downgrade, so we refuse.
func refuseReuseAddr(network, address string, _ syscall.RawConn) error {
	return fmt.Errorf("reuse: share %s %s: windows has only SO_REUSEADDR, which lets any process take the port: %w",
		network, address, ErrUnsupported)
}
