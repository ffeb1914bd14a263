//go:build darwin || aix

package tcp

import "syscall"

// accept returns a connected descriptor with close-on-exec set. There is no
// accept4 here, so hold ForkLock across accept and CloseOnExec, as the
// standard library does, so a concurrent exec cannot inherit it.
func accept(fd int) (int, error) {
	syscall.ForkLock.RLock()
	nfd, _, err := syscall.Accept(fd)
	if err == nil {
		syscall.CloseOnExec(nfd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return -1, err
	}
	if err := syscall.SetNonblock(nfd, true); err != nil {
		syscall.Close(nfd)
		return -1, err
	}
	return nfd, nil
}
