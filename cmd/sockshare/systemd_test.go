//go:build linux

package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockshare/sockshare/cmd/sockshare/internal/sdnotify"
)

// Socket activation of sockshare itself: started as systemd would start
// it, with a bound socket at fd 3 and LISTEN_PID, LISTEN_FDS and
// LISTEN_FDNAMES naming it, the runner serves that very socket and binds
// none of its own.
func TestSocketActivation(t *testing.T) {
	t.Parallel()
	needCommand(t, "python3")
	needCommand(t, "sh")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	addr := ln.Addr().String()
	port := ln.Addr().(*net.TCPAddr).Port
	ino := inode(t, f)

	// sh sets LISTEN_PID to its own pid, which exec keeps.
	r := startRunnerWith(t, runOpts{
		extra: []*os.File{f},
		wrap:  []string{"sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=web exec "$0" "$@"`},
	}, append([]string{"-workers", "2", "-policy", "shared", "-listen", "tcp://" + addr + "#web", "--"}, pythonWorker...)...)
	if got, want := r.listeningURL("shared", 2), "tcp://"+addr+"#web"; got != want {
		t.Errorf("listening on %s, want %s", got, want)
	}
	r.waitLine(r.stderr, literal(`msg="serving a socket systemd passed"`), time.Second)

	// The test's own descriptors go: what serves now is the runner's.
	f.Close()
	ln.Close()
	if got := listeningInodes(t, port); len(got) != 1 || got[0] != ino {
		t.Errorf("listening sockets on port %d: inodes %v; want only the passed socket's, %d", port, got, ino)
	}
	if !holdsInode(r.pid(), ino) {
		t.Errorf("the runner (pid %d) does not hold the passed socket", r.pid())
	}
	as := requests(addr, 20, 2)
	per, errs := byWorker(as)
	if len(errs) > 0 || len(per) == 0 {
		t.Fatalf("answers per worker %v, %d errors %v", per, len(errs), errs)
	}
	for _, a := range as {
		if a.listenPID != strconv.Itoa(a.pid) {
			t.Errorf("worker %d: LISTEN_PID=%q, its pid is %d (the runner's own LISTEN_PID leaked?)", a.worker, a.listenPID, a.pid)
		}
	}
	r.stop()
}

// inode is the inode of f's socket.
func inode(t *testing.T, f *os.File) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// listeningInodes reads /proc/net/tcp for the inodes of the sockets
// listening on 127.0.0.1:port.
func listeningInodes(t *testing.T, port int) []uint64 {
	t.Helper()
	fh, err := os.Open("/proc/net/tcp")
	if err != nil {
		t.Skipf("cannot read the socket table: %v", err)
	}
	defer fh.Close()
	local := fmt.Sprintf("0100007F:%04X", port)
	var out []uint64
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		// sl local_address rem_address st ... uid timeout inode
		f := strings.Fields(sc.Text())
		if len(f) < 10 || f[1] != local || f[3] != "0A" { // 0A: TCP_LISTEN
			continue
		}
		ino, _ := strconv.ParseUint(f[9], 10, 64)
		out = append(out, ino)
	}
	return out
}

// holdsInode reports whether process pid has a descriptor of socket ino.
func holdsInode(pid int, ino uint64) bool {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, _ := os.ReadDir(dir)
	want := fmt.Sprintf("socket:[%d]", ino)
	for _, e := range ents {
		if l, _ := os.Readlink(dir + "/" + e.Name()); l == want {
			return true
		}
	}
	return false
}

// The runner's own sd_notify to $NOTIFY_SOCKET: READY=1 once the
// listening line is out, RELOADING=1 with MONOTONIC_USEC on SIGHUP and
// READY=1 after the reload, STOPPING=1 on SIGTERM; the workers never
// write to the runner's socket.
func TestNotify(t *testing.T) {
	t.Parallel()
	needCommand(t, "python3")
	rc, err := sdnotify.Listen("runner-test")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	// A regular file for stdout: what the runner wrote before it notified
	// is there when the message arrives.
	stdout, err := os.Create(t.TempDir() + "/stdout")
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	// Under -ready started worker.py still sends READY=1 if it finds a
	// NOTIFY_SOCKET: the runner's must not reach it.
	r := startRunnerWith(t, runOpts{env: []string{sdnotify.EnvNotifySocket + "=" + rc.Addr()}, stdout: stdout},
		runArgs(variant{"shared", ""}, workerKind{"python", pythonWorker, []string{"-ready", "started"}})...)
	rc.Expect(r.pid())

	ready := nextMessage(t, rc, func(m sdnotify.Message) bool { return m.Ready })
	if ready.MainPID != r.pid() || !strings.HasPrefix(ready.Status, "2 workers") {
		t.Errorf("READY=1 message %v; want MAINPID=%d and a STATUS of 2 workers", ready.Fields, r.pid())
	}
	out, _ := os.ReadFile(stdout.Name())
	m := listeningRE.FindStringSubmatch(strings.TrimSpace(string(out)))
	if m == nil {
		t.Fatalf("READY=1 came before the listening line; stdout %q", out)
	}
	addr := strings.TrimPrefix(m[1], "tcp://")
	if _, errs := byWorker(requests(addr, 10, 2)); len(errs) > 0 {
		t.Fatalf("after READY=1: %d requests failed, first %v", len(errs), errs[0])
	}

	before := monotonicUsec(t)
	r.signal(syscall.SIGHUP)
	reloading := nextMessage(t, rc, func(m sdnotify.Message) bool { return m.Reloading })
	after := monotonicUsec(t)
	if us, err := strconv.ParseUint(reloading.Fields["MONOTONIC_USEC"], 10, 64); err != nil || us < before || us > after {
		t.Errorf("RELOADING=1 with MONOTONIC_USEC=%q; want CLOCK_MONOTONIC in µs, between %d and %d", reloading.Fields["MONOTONIC_USEC"], before, after)
	}
	nextMessage(t, rc, func(m sdnotify.Message) bool { return m.Ready })

	r.signal(syscall.SIGTERM)
	nextMessage(t, rc, func(m sdnotify.Message) bool { return m.Stopping })
	if code := r.wait(exitTimeout); code != 0 {
		t.Errorf("exit status %v, want 0", r.state)
	}
	r.checkNoneLeft()
	if st := rc.Stats(); st.Foreign != 0 {
		t.Errorf("%d sd_notify messages from other processes (workers) reached the runner's socket", st.Foreign)
	}
}

func monotonicUsec(t *testing.T) uint64 {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return uint64(ts.Nano() / 1000)
}
