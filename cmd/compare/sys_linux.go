package main

import (
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// pinSelf binds every thread of this process to CPU cpu. sched_setaffinity
// with a thread id acts on that thread only, so each of /proc/self/task is
// set; threads the runtime starts later are cloned from pinned ones and
// inherit the mask.
func pinSelf(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil {
			return err
		}
	}
	return nil
}

// bindNoPort sets IP_BIND_ADDRESS_NO_PORT on a socket about to be bound
// to a source address: the port is then chosen at connect time, by the
// whole 4-tuple, instead of reserving one port per bind.
func bindNoPort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
