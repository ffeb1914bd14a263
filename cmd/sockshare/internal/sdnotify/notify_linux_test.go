package sdnotify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// childEnv marks a run of the test binary as a worker that calls Notify.
const childEnv = "SDNOTIFY_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		if err := Notify("STATUS=go child\nREADY=1"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// testTimeout bounds every wait; nothing here should take a fraction of it.
const testTimeout = 10 * time.Second

func listen(t *testing.T) *Receiver {
	t.Helper()
	r, err := Listen(t.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func next(t *testing.T, r *Receiver) Message {
	t.Helper()
	select {
	case m, ok := <-r.Messages():
		if !ok {
			t.Fatal("Messages closed")
		}
		return m
	case <-time.After(testTimeout):
		t.Fatal("no message")
	}
	panic("unreachable")
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// A foreign worker (Python) reports to the abstract address it finds in
// NOTIFY_SOCKET; datagrams the test process sends meanwhile are dropped.
func TestReceiverPythonWorker(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3")
	}
	r := listen(t)
	if !strings.HasPrefix(r.Addr(), "@sockshare/") {
		t.Fatalf("Addr %q, want @sockshare/...", r.Addr())
	}
	// Sent before the worker starts, so read before any of its datagrams.
	if err := NotifyTo(r.Addr(), "READY=1\nSTATUS=impostor"); err != nil {
		t.Fatal(err)
	}
	const script = `
import os, socket, sys
a = os.environ["NOTIFY_SOCKET"]
if a.startswith("@"):
    a = "\0" + a[1:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"STATUS=starting\nX_CUSTOM=yes\nnonsense\nREADY=1\n", a)
sys.stdin.readline()
s.sendto(b"STATUS=second", a)
`
	cmd := exec.Command(py, "-c", script)
	cmd.Env = append(os.Environ(), EnvNotifySocket+"="+r.Addr())
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	pid := cmd.Process.Pid
	r.Expect(pid) // possibly after the worker's first datagram: it is held

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	m, err := r.WaitReady(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m.PID != pid || !m.Ready || m.Status != "starting" || m.Fields["X_CUSTOM"] != "yes" {
		t.Fatalf("ready message %+v, want READY=1 STATUS=starting X_CUSTOM=yes from pid %d", m, pid)
	}
	if s := r.Stats(); s.Foreign != 1 || s.Accepted != 1 {
		t.Fatalf("stats %+v, want the impostor dropped and one accepted", s)
	}
	if got := next(t, r); got.Status != "starting" {
		t.Fatalf("first message %+v", got)
	}

	// Sent before the worker is told to send again, so read first.
	if err := NotifyTo(r.Addr(), "STATUS=impostor"); err != nil {
		t.Fatal(err)
	}
	if _, err := stdin.Write([]byte("\n")); err != nil {
		t.Fatal(err)
	}
	if got := next(t, r); got.Status != "second" || got.PID != pid {
		t.Fatalf("second message %+v, want STATUS=second from %d", got, pid)
	}
	if s := r.Stats(); s.Foreign != 2 || s.Accepted != 2 {
		t.Fatalf("stats %+v, want 2 foreign, 2 accepted", s)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("python worker: %v", err)
	}
}

// Notify in a real child finds NOTIFY_SOCKET and reaches the receiver.
func TestNotifyFromChild(t *testing.T) {
	r := listen(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", EnvNotifySocket+"="+r.Addr(),
		"GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0") // -race sleeps 1 s at exit otherwise
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.Expect(cmd.Process.Pid)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	m, err := r.WaitReady(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m.Status != "go child" || m.PID != cmd.Process.Pid {
		t.Fatalf("got %+v", m)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
}

// Descriptors sent along are closed; an oversize datagram is dropped whole.
func TestReceiverDropsFDsAndOversize(t *testing.T) {
	warm := listen(t) // the poller's own descriptors are opened once
	warm.Close()
	before := openFDs(t)

	r, err := Listen("fds")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.Expect(os.Getpid())
	s, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	to := &unix.SockaddrUnix{Name: r.Addr()}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	if err := unix.Sendmsg(s, []byte("STATUS=with fds"), unix.UnixRights(p[0], p[1]), to, 0); err != nil {
		t.Fatal(err)
	}
	unix.Close(p[0])
	unix.Close(p[1])
	if err := unix.Sendmsg(s, []byte("STATUS="+strings.Repeat("x", MaxDatagram)), nil, to, 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Sendmsg(s, []byte("STATUS=after"), nil, to, 0); err != nil {
		t.Fatal(err)
	}
	unix.Close(s)
	if m := next(t, r); m.Status != "with fds" {
		t.Fatalf("first message %+v", m)
	}
	if m := next(t, r); m.Status != "after" {
		t.Fatalf("second message %+v, want the oversize one dropped", m)
	}
	if st := r.Stats(); st.ClosedFDs != 2 || st.Oversize != 1 || st.Accepted != 2 {
		t.Fatalf("stats %+v, want 2 closed fds, 1 oversize, 2 accepted", st)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if after := openFDs(t); after != before {
		t.Fatalf("open fds: %d before Listen, %d after Close", before, after)
	}
}

// A reader that falls behind loses messages on the channel, never
// readiness.
func TestReceiverOverflow(t *testing.T) {
	r := listen(t)
	r.Expect(os.Getpid())
	const n = queueLen + 7
	for i := range n {
		if err := NotifyTo(r.Addr(), fmt.Sprintf("STATUS=%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := NotifyTo(r.Addr(), "READY=1"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if _, err := r.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if s := r.Stats(); s.Accepted != n+1 || s.Overflow != n+1-queueLen {
		t.Fatalf("stats %+v, want %d accepted, %d overflow", s, n+1, n+1-queueLen)
	}
	for i := range queueLen {
		if m := next(t, r); m.Status != fmt.Sprint(i) {
			t.Fatalf("message %d: %+v", i, m)
		}
	}
}

func TestWaitReadyEnds(t *testing.T) {
	r := listen(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := r.WaitReady(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitReady with no sender: %v, want DeadlineExceeded", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := r.WaitReady(context.Background()); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("WaitReady after Close: %v, want net.ErrClosed", err)
	}
	if _, ok := <-r.Messages(); ok {
		t.Fatal("Messages still open after Close")
	}
	r.Expect(os.Getpid()) // harmless after Close
}

// Notify and NotifyTo reach a filesystem socket too, and do nothing
// without NOTIFY_SOCKET.
func TestNotifyPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "n")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(testTimeout))
	read := func() string {
		buf := make([]byte, 100)
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		return string(buf[:n])
	}
	if err := NotifyTo(path, "READY=1"); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "READY=1" {
		t.Fatalf("got %q", got)
	}
	t.Setenv(EnvNotifySocket, path)
	state := fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", MonotonicUsec())
	if err := Notify(state); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != state {
		t.Fatalf("got %q, want %q", got, state)
	}
	t.Setenv(EnvNotifySocket, "")
	if err := Notify("READY=1"); err != nil {
		t.Fatalf("Notify without NOTIFY_SOCKET: %v", err)
	}
	for _, bad := range []string{"relative/path", "", "vsock:2:3"} {
		if err := NotifyTo(bad, "READY=1"); !errors.Is(err, ErrBadAddr) {
			t.Errorf("NotifyTo(%q): %v, want ErrBadAddr", bad, err)
		}
	}
	if err := NotifyTo("@sockshare/nobody-listens", "READY=1"); err == nil {
		t.Error("NotifyTo an unbound abstract address succeeded")
	}
}

func TestMonotonicUsec(t *testing.T) {
	a := MonotonicUsec()
	b := MonotonicUsec()
	if a == 0 || b < a {
		t.Fatalf("MonotonicUsec %d then %d", a, b)
	}
}

func TestListenBadName(t *testing.T) {
	for _, name := range []string{"a\x00b", strings.Repeat("n", 100)} {
		if _, err := Listen(name); !errors.Is(err, ErrBadName) {
			t.Errorf("Listen(%q): %v, want ErrBadName", name, err)
		}
	}
}
