//go:build unix && !linux

package passfd

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// socketpair creates the pair and then sets close-on-exec, because not every
// unix accepts SOCK_CLOEXEC in the type argument (darwin does not). Holding
// syscall.ForkLock for reading closes the window in which a concurrent
// os/exec fork would inherit the fds, as Go's net package does.
func socketpair() ([2]int, error) {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET, 0)
	if err != nil {
		return fds, err
	}
	unix.CloseOnExec(fds[0])
	unix.CloseOnExec(fds[1])
	return fds, nil
}

// markCloexec sets close-on-exec on fds just received. Go's ReadMsgUnix
// already does this (with MSG_CMSG_CLOEXEC on some of these systems, with
// fcntl on others, but only when the read succeeded); doing it again costs
// one fcntl per fd and keeps the guarantee independent of that detail.
// Where fcntl is what sets it, a fork+exec racing with the receive can still
// inherit the fd; only Linux's MSG_CMSG_CLOEXEC path closes that window.
func markCloexec(fds []int) {
	for _, fd := range fds {
		unix.CloseOnExec(fd)
	}
}
