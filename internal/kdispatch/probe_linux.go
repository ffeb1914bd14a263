package kdispatch

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

var (
	probeOnce sync.Once
	probeErr  error
)

// Probe returns nil when kernel dispatch works here, otherwise an error
// naming the reason that matches [errors.ErrUnsupported] (and
// errors.ErrUnsupported). The first call tries it for real, and the result
// is kept: it forms a throwaway group of two plain-TCP SO_REUSEPORT
// sockets on 127.0.0.1, attaches the leastconn program (which needs all
// that the others do and more: the BPF atomic fetch-add, bpf_loop, BTF, a
// mmapable array), then closes all of it.
func Probe() error {
	probeOnce.Do(func() { probeErr = probe() })
	return probeErr
}

func probe() error {
	fds, err := reusePortPair()
	if err != nil {
		return fmt.Errorf("kdispatch: probe: could not form a SO_REUSEPORT group on 127.0.0.1: %w: %w", err, errUnsupported)
	}
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	g, err := NewGroup(LeastConn, fds[:])
	if err != nil {
		return fmt.Errorf("kdispatch: probe: %s: %w (%w)", reason(err), err, errUnsupported)
	}
	if err := g.Close(); err != nil {
		return fmt.Errorf("kdispatch: probe: %w", err)
	}
	return nil
}

// enotsupp is the kernel-internal ENOTSUPP (524) that some bpf(2) paths
// return to user space; x/sys/unix does not name it.
const enotsupp = unix.Errno(524)

// reason says in a few words why err keeps kernel dispatch from working.
func reason(err error) string {
	switch {
	case errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES):
		return "no permission to load BPF programs (needs root, or CAP_BPF and CAP_NET_ADMIN)"
	case errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, unix.EINVAL) ||
		errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, enotsupp) || errors.Is(err, unix.ENOSYS):
		return "kernel too old or built without what it needs (SK_REUSEPORT programs, REUSEPORT_SOCKARRAY, BPF atomics, bpf_loop, mmapable arrays: Linux 5.17+)"
	}
	return "kernel dispatch failed"
}

// reusePortPair binds two listening plain-TCP sockets with SO_REUSEPORT to
// one port on 127.0.0.1. socket(2) directly, not net.Listen: Go's
// listeners are MPTCP where the kernel has it.
func reusePortPair() (fds [2]int, err error) {
	fds = [2]int{-1, -1}
	defer func() {
		if err != nil {
			for _, fd := range fds {
				if fd >= 0 {
					unix.Close(fd)
				}
			}
		}
	}()
	var addr unix.Sockaddr = &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
	for i := range fds {
		fds[i], err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fds, fmt.Errorf("socket: %w", err)
		}
		if err = unix.SetsockoptInt(fds[i], unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			return fds, fmt.Errorf("setsockopt SO_REUSEPORT: %w", err)
		}
		if err = unix.Bind(fds[i], addr); err != nil {
			return fds, fmt.Errorf("bind: %w", err)
		}
		if err = unix.Listen(fds[i], 1); err != nil {
			return fds, fmt.Errorf("listen: %w", err)
		}
		if addr, err = unix.Getsockname(fds[i]); err != nil {
			return fds, fmt.Errorf("getsockname: %w", err)
		}
	}
	return fds, nil
}
