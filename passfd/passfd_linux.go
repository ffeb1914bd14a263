package passfd

import "golang.org/x/sys/unix"

// socketpair creates the pair with SOCK_CLOEXEC, so there is no moment at
// which a concurrent fork+exec could inherit either end.
func socketpair() ([2]int, error) {
	return unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
}

// markCloexec has nothing to do on Linux: ReadMsgUnix passes
// MSG_CMSG_CLOEXEC, so the kernel installs received fds close-on-exec.
func markCloexec([]int) {}
