package fdproto

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// childEnv marks a run of the test binary as a socket-activated child;
// childAddrEnv holds the address of the listening socket it gets as fd 3.
const (
	childEnv     = "FDPROTO_TEST_CHILD"
	childAddrEnv = "FDPROTO_TEST_ADDR"
)

const testTimeout = 10 * time.Second

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		if err := child(); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// child runs in a process started with a listening socket at fd 3,
// LISTEN_FDS=1 and a LISTEN_PID that is not its own.
func child() error {
	fds, err := Inherited()
	if err != nil || len(fds) != 0 {
		return fmt.Errorf("Inherited with another LISTEN_PID: %v, %v; want none", fds, err)
	}
	for _, k := range []string{EnvListenFDs, EnvListenPID, EnvListenFDNames} {
		if v, ok := os.LookupEnv(k); ok {
			return fmt.Errorf("%s=%s still set", k, v)
		}
	}
	// Now as systemd would have it for this process.
	os.Setenv(EnvListenPID, strconv.Itoa(os.Getpid()))
	os.Setenv(EnvListenFDs, "1")
	os.Setenv(EnvListenFDNames, "web")
	fds, err = Inherited()
	if err != nil || len(fds) != 1 {
		return fmt.Errorf("Inherited: %v, %v; want one", fds, err)
	}
	f := fds[0]
	if f.FD != 3 || f.Name != "web" || f.Network != "tcp4" || f.Addr.String() != os.Getenv(childAddrEnv) {
		return fmt.Errorf("inherited %s, want fd 3 \"web\" tcp4 %s", f, os.Getenv(childAddrEnv))
	}
	if _, ok := os.LookupEnv(EnvListenFDs); ok {
		return errors.New("LISTEN_FDS still set")
	}
	if flags, err := unix.FcntlInt(3, unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC == 0 {
		return fmt.Errorf("fd 3 flags %#x, %v: want close-on-exec", flags, err)
	}
	socks := []Socket{{Network: "tcp", Addr: os.Getenv(childAddrEnv)}}
	if m, err := Match(socks, fds); err != nil || m[0] != 0 {
		return fmt.Errorf("Match: %v, %v", m, err)
	}
	ln, err := net.FileListener(f.File)
	if err != nil {
		return err
	}
	f.File.Close()
	defer ln.Close()
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(testTimeout))
	c, err := ln.Accept()
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = io.WriteString(c, "served by the child")
	return err
}

// A real child given a listening socket at fd 3: it ignores it while
// LISTEN_PID names another process, takes it when it names its own, and
// serves on it.
func TestInheritedChild(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.ExtraFiles = []*os.File{f}
	cmd.Env = append(StripEnv(os.Environ()),
		childEnv+"=1", childAddrEnv+"="+ln.Addr().String(),
		EnvListenFDs+"=1", EnvListenFDNames+"=web",
		EnvListenPID+"=1", // init's, never the child's
		"GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	ln.Close() // the child's copy keeps the socket listening
	c, err := net.DialTimeout("tcp4", ln.Addr().String(), testTimeout)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "served by the child" {
		t.Errorf("read %q, %v", got, err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
}

// dupAt duplicates c's descriptor to exactly want, which must be free;
// the duplicate is not close-on-exec, as systemd passes it. (Not through
// File and Fd, which would make the shared socket blocking.)
func dupAt(t *testing.T, c syscall.Conn, want int) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	got := -1
	if err := rc.Control(func(fd uintptr) { got, err = unix.FcntlInt(fd, unix.F_DUPFD, want) }); err != nil {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		unix.Close(got)
		t.Fatalf("descriptor %d is taken", want)
	}
}

// The core of Inherited on real descriptors, placed at consecutive numbers
// well above the test process's own.
func TestInheritedFrom(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pc, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 loopback:", err)
	}
	defer pc.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()

	const first = 900
	dupAt(t, ln.(*net.TCPListener), first)
	dupAt(t, pc.(*net.UDPConn), first+1)
	dupAt(t, r, first+2)
	env := map[string]string{
		EnvListenPID:     "4242",
		EnvListenFDs:     "3",
		EnvListenFDNames: "web:dns:pipe",
	}
	fds, err := inheritedFrom(func(k string) string { return env[k] }, 4242, first)
	if err != nil {
		for i := range 3 {
			unix.Close(first + i)
		}
		t.Fatal(err)
	}
	defer func() {
		for _, f := range fds {
			f.File.Close()
		}
	}()
	want := []string{
		fmt.Sprintf("fd %d \"web\" tcp4 %s", first, ln.Addr()),
		fmt.Sprintf("fd %d \"dns\" udp6 %s", first+1, pc.LocalAddr()),
		fmt.Sprintf("fd %d \"pipe\" (not an inet or unix socket)", first+2),
	}
	if len(fds) != 3 {
		t.Fatalf("got %d descriptors, want 3", len(fds))
	}
	for i, f := range fds {
		if f.String() != want[i] || f.File == nil {
			t.Errorf("descriptor %d: %s, want %s", i, f, want[i])
		}
		if flags, err := unix.FcntlInt(uintptr(f.FD), unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC == 0 {
			t.Errorf("fd %d flags %#x, %v: want close-on-exec", f.FD, flags, err)
		}
	}
	// Matched with listen URLs: the pipe nobody asked for is the error.
	socks := mustParse(t, "udp://[::1]:"+strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port), "tcp://0.0.0.0:1#web")
	if _, err := Match(socks, fds); !errors.Is(err, ErrUnclaimed) {
		t.Errorf("Match with the pipe: %v, want ErrUnclaimed", err)
	}
	if m, err := Match(socks, fds[:2]); err != nil || m[0] != 1 || m[1] != 0 {
		t.Errorf("Match = %v, %v; want listen 0 → 1, 1 → 0", m, err)
	}
}

func TestInheritedFromEnv(t *testing.T) {
	const pid = 4242
	free := 100000 // above any descriptor this test opens
	tests := []struct {
		env     map[string]string
		wantErr error
		errHas  string
	}{
		{env: map[string]string{}},
		{env: map[string]string{EnvListenFDs: "1"}},
		{env: map[string]string{EnvListenPID: "4243", EnvListenFDs: "1"}},
		{env: map[string]string{EnvListenPID: "4242"}},
		{env: map[string]string{EnvListenPID: "4242", EnvListenFDs: "0"}},
		{env: map[string]string{EnvListenPID: "x", EnvListenFDs: "1"}, wantErr: ErrBadEnv, errHas: `LISTEN_PID="x" is not a pid`},
		{env: map[string]string{EnvListenPID: "4242", EnvListenFDs: "-1"}, wantErr: ErrBadEnv, errHas: `LISTEN_FDS="-1"`},
		{env: map[string]string{EnvListenPID: "4242", EnvListenFDs: "99999999"}, wantErr: ErrBadEnv},
		{env: map[string]string{EnvListenPID: "4242", EnvListenFDs: "2", EnvListenFDNames: "a"},
			wantErr: ErrBadEnv, errHas: `LISTEN_FDNAMES="a" has 1 names for LISTEN_FDS=2`},
		{env: map[string]string{EnvListenPID: "4242", EnvListenFDs: "1"},
			wantErr: ErrBadEnv, errHas: fmt.Sprintf("descriptor %d is not open", free)},
	}
	for _, tt := range tests {
		fds, err := inheritedFrom(func(k string) string { return tt.env[k] }, pid, free)
		if tt.wantErr == nil {
			if err != nil || fds != nil {
				t.Errorf("%v: %v, %v; want none", tt.env, fds, err)
			}
			continue
		}
		if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.errHas) {
			t.Errorf("%v: %v; want %v containing %q", tt.env, err, tt.wantErr, tt.errHas)
		}
	}
}

// Inherited itself, in this process: LISTEN_PID of another process gives
// nothing, and the variables are gone afterwards.
func TestInheritedUnsets(t *testing.T) {
	t.Setenv(EnvListenPID, "1")
	t.Setenv(EnvListenFDs, "1")
	t.Setenv(EnvListenFDNames, "x")
	if fds, err := Inherited(); err != nil || fds != nil {
		t.Fatalf("Inherited: %v, %v", fds, err)
	}
	for _, k := range []string{EnvListenFDs, EnvListenPID, EnvListenFDNames} {
		if _, ok := os.LookupEnv(k); ok {
			t.Errorf("%s still set", k)
		}
	}
}
