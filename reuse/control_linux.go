package reuse

import (
	"fmt"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// platformControls are the options set on every socket, in order; an option
// of our own goes in this list.
func platformControls() []controlFunc {
	return []controlFunc{setReusePort, clearUDPReuseAddr}
}

// clearUDPReuseAddr undoes go-reuseport's SO_REUSEADDR on UDP sockets. On
// Linux two UDP sockets that both set SO_REUSEADDR may bind the same address
// whatever their owners, and unicast datagrams then go to the newcomer: a
// process of any user could take the group's traffic. SO_REUSEPORT alone
// still forms the group, and only admits sockets of the same effective uid.
// TCP keeps SO_REUSEADDR (Go sets it on every listener anyway): a TCP
// listener cannot be joined through it.
func clearUDPReuseAddr(network, address string, c syscall.RawConn) error {
	if !strings.HasPrefix(network, "udp") {
		return nil
	}
	var setErr error
	err := c.Control(func(fd uintptr) {
		setErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 0)
	})
	if err == nil {
		err = setErr
	}
	if err != nil {
		return fmt.Errorf("reuse: clear SO_REUSEADDR on %s %s: %w", network, address, err)
	}
	return nil
}
