//go:build unix

package passfd

import (
	"errors"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

var warmUp sync.Once

// openFDs counts the entries of /proc/self/fd, or returns -1 where there is
// no /proc to count.
func openFDs(t testing.TB) int {
	t.Helper()
	if runtime.GOOS != "linux" {
		return -1
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("counting open fds: %v", err)
	}
	return len(ents)
}

// checkNoLeak records the number of open fds now and, at cleanup (after
// every cleanup registered later, which closes the test's own sockets),
// fails the test if the count differs. Call it before anything else.
func checkNoLeak(t *testing.T) {
	t.Helper()
	// The first socket of the process creates the netpoller's epoll fd and
	// friends; make that happen before the baseline is taken.
	warmUp.Do(func() {
		a, b, err := Socketpair()
		if err == nil {
			a.Close()
			b.Close()
		}
	})
	before := openFDs(t)
	if before < 0 {
		return
	}
	t.Cleanup(func() {
		if after := openFDs(t); after != before {
			t.Errorf("open fds: %d before, %d after: %+d leaked", before, after, after-before)
		}
	})
}

// pair returns both ends of a Socketpair as *net.UnixConn, closed at cleanup.
func pair(t *testing.T) (a, b *net.UnixConn) {
	t.Helper()
	a, remote, err := Socketpair()
	if err != nil {
		t.Fatalf("Socketpair: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	b, err = FileConn(remote)
	if err != nil {
		t.Fatalf("FileConn: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return a, b
}

// pipes returns n pipes' read and write ends as raw fds, closed at cleanup.
func pipes(t *testing.T, n int) (r, w []int) {
	t.Helper()
	for range n {
		var p [2]int
		if err := unix.Pipe(p[:]); err != nil {
			t.Fatalf("pipe: %v", err)
		}
		unix.CloseOnExec(p[0])
		unix.CloseOnExec(p[1])
		r, w = append(r, p[0]), append(w, p[1])
	}
	t.Cleanup(func() { CloseAll(r); CloseAll(w) })
	return r, w
}

// needFDs skips the test when RLIMIT_NOFILE is too low for n more fds.
func needFDs(t *testing.T, n int) {
	t.Helper()
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if uint64(lim.Cur) < uint64(n)+256 { // int64 on some BSDs
		t.Skipf("RLIMIT_NOFILE %d is too low for %d more fds", lim.Cur, n)
	}
}

func isOpen(fd int) bool {
	_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	return !errors.Is(err, unix.EBADF)
}

// sameFile reports whether fds a and b refer to the same inode.
func sameFile(t *testing.T, a, b int) bool {
	t.Helper()
	var sa, sb unix.Stat_t
	if err := unix.Fstat(a, &sa); err != nil {
		t.Fatalf("fstat %d: %v", a, err)
	}
	if err := unix.Fstat(b, &sb); err != nil {
		t.Fatalf("fstat %d: %v", b, err)
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// sendAsync runs Send on its own goroutine, for messages of several
// datagrams: the peer's queue holds only net.unix.max_dgram_qlen (10 by
// default) of them.
func sendAsync(c *net.UnixConn, payload []byte, fds []int) <-chan error {
	done := make(chan error, 1)
	go func() { done <- Send(c, payload, fds) }()
	return done
}

// rawSend writes one datagram with arbitrary framing, bypassing Send.
func rawSend(t *testing.T, c *net.UnixConn, data []byte, fds []int) {
	t.Helper()
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := c.WriteMsgUnix(data, oob, nil); err != nil {
		t.Fatalf("raw sendmsg: %v", err)
	}
}

// roundTrip sends one message and checks the next Recv returns it intact.
func roundTrip(t *testing.T, a, b *net.UnixConn, payload string, fds []int) {
	t.Helper()
	done := sendAsync(a, []byte(payload), fds)
	buf := make([]byte, 256)
	n, got, err := Recv(b, buf, len(fds))
	if serr := <-done; serr != nil {
		t.Fatalf("Send: %v", serr)
	}
	if err != nil {
		t.Fatalf("Recv: %v", err)
	}
	defer CloseAll(got)
	if string(buf[:n]) != payload {
		t.Errorf("payload %q, want %q", buf[:n], payload)
	}
	if len(got) != len(fds) {
		t.Fatalf("got %d fds, want %d", len(got), len(fds))
	}
	for i := range fds {
		if !sameFile(t, got[i], fds[i]) {
			t.Errorf("fd %d of %d: received fd %d is not the file sent as %d", i, len(fds), got[i], fds[i])
		}
	}
}
