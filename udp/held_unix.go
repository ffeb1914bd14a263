//go:build unix && !aix

package udp

import "golang.org/x/sys/unix"

// dupCloexec duplicates fd with close-on-exec set atomically, so a
// concurrent fork/exec of a worker never inherits the duplicate.
func dupCloexec(fd int) (int, error) {
	return unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
}

func closeFD(fd int) error { return unix.Close(fd) }
