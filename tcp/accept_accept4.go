//go:build linux || freebsd || netbsd || openbsd || dragonfly || solaris

package tcp

import "golang.org/x/sys/unix"

// accept returns a connected descriptor with close-on-exec set atomically,
// so a concurrent fork/exec in the master never inherits it.
func accept(fd int) (int, error) {
	nfd, _, err := unix.Accept4(fd, unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
	return nfd, err
}

func dupCloexec(fd int) (int, error) { return unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0) }
