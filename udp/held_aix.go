package udp

import "syscall"

// dupCloexec duplicates fd with close-on-exec set. There is no
// F_DUPFD_CLOEXEC here: ForkLock keeps a concurrent exec from inheriting
// the duplicate between dup and CloseOnExec, as the standard library does.
func dupCloexec(fd int) (int, error) {
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
