//go:build linux

// Package sockfdtest helps tests check which sockets this process's
// netpoller watches, through /proc/self/fdinfo.
package sockfdtest

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// PolledSockets returns the sockets (as /proc/self/fd link targets, such as
// "socket:[1234]") registered in this process's epoll instances, mapped to
// the descriptor number epoll knows them by. Compare sockets, not numbers:
// a duplicate of a polled descriptor is the same socket and wakes the
// process just the same.
func PolledSockets(t testing.TB) map[string]int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot list fds: %v", err)
	}
	out := map[string]int{}
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil || target != "anon_inode:[eventpoll]" {
			continue
		}
		info, err := os.ReadFile("/proc/self/fdinfo/" + e.Name())
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(info), "\n") {
			// "tfd:        7 events:       19 data: ..."
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "tfd:" {
				if fd, err := strconv.Atoi(f[1]); err == nil {
					out[SocketOf(fd)] = fd
				}
			}
		}
	}
	return out
}

// SocketOf names the socket behind fd.
func SocketOf(fd int) string {
	target, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return "fd " + strconv.Itoa(fd) + ": " + err.Error()
	}
	return target
}
