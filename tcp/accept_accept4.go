//go:build linux || freebsd || netbsd || openbsd || dragonfly || solaris

package tcp

import "syscall"

// accept returns a connected descriptor with close-on-exec set atomically,
// so a concurrent fork/exec in the master never inherits it.
func accept(fd int) (int, error) {
	// syscall, not x/sys/unix: the latter has no Accept4 on openbsd.
	nfd, _, err := syscall.Accept4(fd, syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK)
	return nfd, err
}
