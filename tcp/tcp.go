package tcp

import (
	"fmt"
	"net"
	"os"
)

// FileListener turns a listening descriptor received from the master into a
// net.Listener. It takes ownership of fd: the descriptor is closed whether or
// not it succeeds (net.FileListener works on a duplicate).
func FileListener(fd int) (net.Listener, error) {
	f := os.NewFile(uintptr(fd), "sockshare-listener")
	if f == nil {
		return nil, fmt.Errorf("tcp: invalid listener descriptor %d", fd)
	}
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("tcp: listener from descriptor: %w", err)
	}
	return ln, nil
}

// listenerFD returns the descriptor of l without changing its mode
// (Fd() would switch it to blocking). The descriptor stays owned by l.
func listenerFD(l *net.TCPListener) (int, error) {
	rc, err := l.SyscallConn()
	if err != nil {
		return -1, err
	}
	var fd int
	if err := rc.Control(func(u uintptr) { fd = int(u) }); err != nil {
		return -1, err
	}
	return fd, nil
}
