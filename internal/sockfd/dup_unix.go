//go:build unix && !aix

package sockfd

import "golang.org/x/sys/unix"

// DupCloexec duplicates fd with close-on-exec set atomically, so a
// concurrent fork/exec never inherits the duplicate.
func DupCloexec(fd int) (int, error) {
	return unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
}

func closeFD(fd int) error { return unix.Close(fd) }
