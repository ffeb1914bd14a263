//go:build !unix

package passfd

import (
	"net"
	"os"
)

// Send returns an error wrapping ErrUnsupported: this platform cannot pass
// fds over a unix socket.
func Send(c *net.UnixConn, payload []byte, fds []int) error {
	return newError("sendmsg", "", ErrUnsupported)
}

// Recv returns an error wrapping ErrUnsupported.
func Recv(c *net.UnixConn, buf []byte, maxFDs int) (n int, fds []int, err error) {
	return 0, nil, newError("recvmsg", "", ErrUnsupported)
}

// ParseRights returns an error wrapping ErrUnsupported.
func ParseRights(oob []byte) ([]int, error) {
	return nil, newError("parse rights", "", ErrUnsupported)
}

// Socketpair returns an error wrapping ErrUnsupported.
func Socketpair() (local *net.UnixConn, remote *os.File, err error) {
	return nil, nil, newError("socketpair", "", ErrUnsupported)
}

// FileConn closes f, as on every platform, and returns an error wrapping
// ErrUnsupported.
func FileConn(f *os.File) (*net.UnixConn, error) {
	if f != nil {
		f.Close()
	}
	return nil, newError("fileconn", "", ErrUnsupported)
}

// CloseAll does nothing: on this platform Recv never returns fds.
func CloseAll(fds []int) {}
