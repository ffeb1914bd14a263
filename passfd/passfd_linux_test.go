package passfd

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// passCredOpt is SO_PASSCRED, for TestMalformed's credentials case.
const passCredOpt = unix.SO_PASSCRED

// TestTruncatedByRlimit lowers RLIMIT_NOFILE so that only three fds can be
// installed, then receives 50: the kernel installs three, drops the rest and
// sets MSG_CTRUNC, and Recv must close the three.
func TestTruncatedByRlimit(t *testing.T) {
	checkNoLeak(t)
	a, b := pair(t)
	_, w := pipes(t, 1)
	fds := make([]int, 50)
	for i := range fds {
		fds[i] = w[0]
	}
	// Send before lowering the limit: Linux also counts in-flight fds
	// against the sender's RLIMIT_NOFILE.
	if err := Send(a, []byte("x"), fds); err != nil {
		t.Fatalf("Send: %v", err)
	}

	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	// Restored twice: right after Recv, so the rest of the test runs at the
	// usual limit, and deferred, whatever happens in between.
	restore := func() error { return unix.Setrlimit(unix.RLIMIT_NOFILE, &old) }
	defer restore()
	lim := old
	lim.Cur = uint64(limitLeaving(t, 3))
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("lowering RLIMIT_NOFILE to %d: %v", lim.Cur, err)
	}
	n, got, err := Recv(b, make([]byte, 8), len(fds))
	if rerr := restore(); rerr != nil {
		t.Fatalf("restoring RLIMIT_NOFILE: %v", rerr)
	}
	if !errors.Is(err, ErrTruncated) {
		t.Fatalf("Recv at RLIMIT_NOFILE: %v, want ErrTruncated", err)
	}
	if got != nil {
		t.Errorf("Recv returned fds=%v with an error", got)
	}
	if n != 1 {
		t.Errorf("Recv at RLIMIT_NOFILE returned n=%d; want the 1-byte payload with the error", n)
	}
	roundTrip(t, a, b, "next", w)
}

// limitLeaving returns the RLIMIT_NOFILE value below which exactly free fd
// numbers are unused: the kernel hands out the lowest free number, and only
// numbers below the limit.
func limitLeaving(t *testing.T, free int) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	open := make(map[string]bool, len(ents))
	for _, e := range ents {
		open[e.Name()] = true
	}
	// The directory fd ReadDir used is closed again: its number was free.
	for fd := 0; ; fd++ {
		if !open[fmt.Sprint(fd)] || !isOpen(fd) {
			if free--; free == 0 {
				return fd + 1
			}
		}
	}
}
