//go:build aix

package sockfd

import "syscall"

// DupCloexec duplicates fd with close-on-exec set. x/sys/unix has no
// F_DUPFD_CLOEXEC here, so hold syscall.ForkLock across the dup and the
// CloseOnExec, as the standard library does, so a concurrent exec cannot
// inherit the duplicate.
func DupCloexec(fd int) (int, error) {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	nfd, err := syscall.Dup(fd)
	if err != nil {
		return -1, err
	}
	syscall.CloseOnExec(nfd)
	return nfd, nil
}

func closeFD(fd int) error { return syscall.Close(fd) }
