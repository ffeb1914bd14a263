//go:build linux

package sockshare_test

// Hardening tests: malformed IPC from a worker, descriptor hygiene across
// exec and at RLIMIT_NOFILE, no filesystem path for the IPC, and every bad
// input a user can give getting a clear error. docs/HARDENING.md explains
// what each one guards against.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sockshare/sockshare"
	"github.com/sockshare/sockshare/internal/ipc"
	"github.com/sockshare/sockshare/passfd"
	"github.com/sockshare/sockshare/policy"
	"github.com/sockshare/sockshare/reuse"
)

// Environment of the hardening roles.
const (
	garbageEnv       = "SOCKSHARE_TEST_GARBAGE"        // which malformed message the garbage worker sends
	grandchildEnv    = "SOCKSHARE_TEST_GRANDCHILD"     // what the grandchild role does: "" lists its fds
	hardeningAddrEnv = "SOCKSHARE_TEST_HARDENING_ADDR" // the address of the privileged-port roles
)

func init() {
	roles["garbage"] = garbageWorker
	roles["exec-child"] = execChildWorker
	roles["grandchild"] = grandchildRole
	roles["rlimit-slot0"] = rlimitSlot0Worker
	roles["bad-input"] = badInputWorker
	roles["privileged-worker"] = privilegedWorker
}

// workerInSlot returns the running worker of slot, failing the test if
// there is none.
func workerInSlot(t *testing.T, c *cluster, slot int) sockshare.WorkerInfo {
	t.Helper()
	for _, w := range c.m.Workers() {
		if w.Slot == slot {
			return w
		}
	}
	t.Fatalf("no worker in slot %d: %+v", slot, c.m.Workers())
	return sockshare.WorkerInfo{}
}

// exitOf waits for the exit event of worker id and returns it.
func exitOf(c *cluster, id int, timeout time.Duration) sockshare.Event {
	c.t.Helper()
	var ev sockshare.Event
	c.waitFor(fmt.Sprintf("worker %d to exit", id), timeout, func(evs []sockshare.Event, _ []string) bool {
		for _, e := range evs {
			if e.Type == sockshare.EventExit && e.WorkerID == id {
				ev = e
				return true
			}
		}
		return false
	})
	return ev
}

// tcpListening waits for the first EventListening on a tcp network and
// returns its address (c.addr may be a UDP address when a role listens on
// both).
func tcpListening(c *cluster) string {
	c.t.Helper()
	var addr string
	c.waitFor("a tcp listener", 20*time.Second, func(evs []sockshare.Event, _ []string) bool {
		for _, e := range evs {
			if e.Type == sockshare.EventListening && strings.HasPrefix(e.Network, "tcp") {
				addr = e.Addr
				return true
			}
		}
		return false
	})
	return addr
}

// message waits for the first message starting with prefix and returns
// the rest.
func message(c *cluster, prefix string, timeout time.Duration) string {
	c.t.Helper()
	var got string
	c.waitFor("a message "+strconv.Quote(prefix), timeout, func(_ []sockshare.Event, msgs []string) bool {
		for _, m := range msgs {
			// Messages are recorded as "<worker id> <payload>".
			if _, p, ok := strings.Cut(m, " "); ok && strings.HasPrefix(p, prefix) {
				got = strings.TrimPrefix(p, prefix)
				return true
			}
		}
		return false
	})
	return got
}

// quietFDs returns the master's descriptor count once no handoff is in
// flight and the count is the same twice in a row: the copies of handed
// connections close when the worker's acknowledgement arrives, after the
// client already has its answer.
func quietFDs(t *testing.T, c *cluster) int {
	t.Helper()
	last, n := -1, -1
	pollUntil(10*time.Second, func() bool {
		last, n = n, openFDs(t)
		inflight := 0
		for _, w := range c.m.Workers() {
			inflight += w.Inflight
		}
		return inflight == 0 && n == last
	})
	return n
}

// waitFDs polls the master's descriptor count until it is within 2 of
// before and no handoff is in flight, or the deadline passes, and returns
// the last count. Acknowledgements that close the master's copies travel
// over IPC after the client already has its answer, and no event marks
// their arrival.
func waitFDs(t *testing.T, c *cluster, before int) int {
	t.Helper()
	var after int
	pollUntil(10*time.Second, func() bool {
		after = openFDs(t)
		inflight := 0
		for _, w := range c.m.Workers() {
			inflight += w.Inflight
		}
		return inflight == 0 && after-before <= 2 && before-after <= 2
	})
	return after
}

// ---------------------------------------------------------------------
// Malformed IPC

// garbageCases are the malformed messages a worker can send, with a part
// of the cause the master must report.
var garbageCases = []struct {
	kind, cause string
}{
	{"framing", "unknown framing header 0x7f"},
	{"unknown-type", "unknown type 99"},
	{"truncated", "string length 10 past the end"},
	{"oversized", "payload too large"},
	{"wrong-direction", "unexpected conns message from a worker"},
	{"bad-hello", "hello from pid 1, expected"},
	{"fds", "control message truncated"},
}

// garbageWorker serves HTTP; in slot 1 it also breaks the IPC protocol, as
// $SOCKSHARE_TEST_GARBAGE says, when the master sends "go".
func garbageWorker() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	start := make(chan struct{}, 1)
	sockshare.HandleMessages(func(p []byte) {
		if string(p) == "go" {
			select {
			case start <- struct{}{}:
			default:
			}
		}
	})
	ln, err := sockshare.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 2
	}
	if sockshare.Slot() != 1 {
		return serveHTTP(ctx, ln)
	}
	go serveHTTP(ctx, ln)
	select {
	case <-start:
	case <-ctx.Done():
		return 0
	}
	if err := sendGarbage(sockshare.WorkerIPCForTest(), os.Getenv(garbageEnv)); err != nil {
		fmt.Fprintln(os.Stderr, "garbage worker:", err)
		return 3
	}
	// The master kills us now.
	<-ctx.Done()
	return 0
}

func sendGarbage(conn *net.UnixConn, kind string) error {
	encode := func(m *ipc.Msg) []byte {
		b, err := ipc.Append(nil, m)
		if err != nil {
			panic(err)
		}
		return b
	}
	switch kind {
	case "framing":
		// Not even passfd's framing: an unknown header byte.
		_, err := conn.Write([]byte{0x7f, 1, 2, 3})
		return err
	case "unknown-type":
		return passfd.Send(conn, []byte{99, 0}, nil)
	case "truncated":
		// A Listen whose network string claims 10 bytes and has 1.
		return passfd.Send(conn, []byte{byte(ipc.Listen), 0, 10, 't'}, nil)
	case "oversized":
		// passfd.Send refuses this much; write the datagram by hand:
		// framing header 0 (whole message), then 100 KiB.
		_, err := conn.Write(make([]byte, 1+100<<10))
		return err
	case "wrong-direction":
		// A master-to-worker message, sent the other way.
		return passfd.Send(conn, encode(&ipc.Msg{Type: ipc.Conns, IDs: []uint64{ipc.ConnID(1, 1)}}), nil)
	case "bad-hello":
		return passfd.Send(conn, encode(&ipc.Msg{Type: ipc.Hello, PID: 1}), nil)
	case "fds":
		// A valid user message with 64 descriptors nobody asked for.
		var fds []int
		for range 32 {
			var p [2]int
			if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC); err != nil {
				return err
			}
			fds = append(fds, p[0], p[1])
		}
		defer passfd.CloseAll(fds)
		return passfd.Send(conn, encode(&ipc.Msg{Type: ipc.User, Payload: []byte("unsolicited fds")}), fds)
	}
	return fmt.Errorf("unknown garbage kind %q", kind)
}

// TestMalformedIPCKillsOnlyThatWorker: a worker that breaks the IPC
// protocol (bad framing, unknown type, truncated, oversized, wrong
// direction, lying hello, unsolicited descriptors) is killed, with the
// cause in its exit event and in the master's log; the other worker keeps
// serving, and the master's descriptor count does not grow.
func TestMalformedIPCKillsOnlyThatWorker(t *testing.T) {
	for _, tc := range garbageCases {
		t.Run(tc.kind, func(t *testing.T) {
			var logs logSink
			cfg := sockshare.Config{
				Workers: 2, Policy: "rr",
				RestartDelay: time.Hour, // keep the slot empty: no new fds
				Logger:       slog.New(slog.NewTextHandler(&logs, nil)),
			}
			c := startCluster(t, cfg, "garbage", garbageEnv+"="+tc.kind)
			// Both workers serve; this also opens whatever the master
			// opens lazily before the baseline is taken.
			if per, errs := tally(load(c.addr, "/", 20, 2)); len(errs) > 0 || len(per) != 2 {
				t.Fatalf("before the garbage: per worker %v, errors %v", per, errs)
			}
			good, bad := workerInSlot(t, c, 0), workerInSlot(t, c, 1)
			before := quietFDs(t, c)

			if err := c.m.Send(bad.ID, []byte("go")); err != nil {
				t.Fatal(err)
			}
			e := exitOf(c, bad.ID, 20*time.Second)
			if e.Err == nil || !strings.Contains(e.Err.Error(), tc.cause) {
				t.Errorf("exit event error = %v; want the cause %q", e.Err, tc.cause)
			}
			if e.Signal != syscall.SIGKILL || e.Asked {
				t.Errorf("exit event %v; want killed with SIGKILL, not asked", e)
			}
			log := logs.String()
			if !strings.Contains(log, "worker broke the IPC protocol; killing it") ||
				!strings.Contains(log, "pid="+strconv.Itoa(bad.PID)) || !strings.Contains(log, tc.cause) {
				t.Errorf("master log does not report the protocol error of pid %d with %q:\n%s", bad.PID, tc.cause, log)
			}

			// The other worker serves everything now.
			for i := range 10 {
				r := get(c.addr, "/")
				if r.err != nil || r.status != 200 || r.worker != strconv.Itoa(good.ID) {
					t.Fatalf("request %d after the kill: %+v; want 200 from worker %d", i, r, good.ID)
				}
			}
			if ws := c.m.Workers(); len(ws) != 1 || ws[0].ID != good.ID {
				t.Errorf("workers after the kill: %+v; want only %d", ws, good.ID)
			}
			after := waitFDs(t, c, before)
			if after-before > 2 || before-after > 2 {
				t.Errorf("master fds: %d before the garbage, %d after", before, after)
			}
			t.Logf("master fds: %d before the garbage, %d after", before, after)
		})
	}
}

// ---------------------------------------------------------------------
// Descriptor hygiene: nothing crosses an exec

// execChildWorker listens on TCP and UDP under the master's policy,
// accepts one connection (under rr that fd arrived over IPC), then execs
// the test binary as a grandchild that lists its descriptors, and sends
// the listing to the master.
func execChildWorker() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	report := func(format string, args ...any) {
		sockshare.Send([]byte(fmt.Sprintf(format, args...)))
	}
	ln, err := sockshare.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		report("error listen: %v", err)
		<-ctx.Done()
		return 2
	}
	defer ln.Close()
	pc, err := sockshare.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		report("error listen udp: %v", err)
		<-ctx.Done()
		return 2
	}
	defer pc.Close()
	conn, err := ln.Accept()
	if err != nil {
		report("error accept: %v", err)
		<-ctx.Done()
		return 2
	}
	defer conn.Close()

	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, os.Args[0])
	// Stdout and stderr are pipes and stdin is /dev/null, so any socket
	// the grandchild holds was inherited by mistake.
	cmd.Env = append(os.Environ(), roleEnv+"=grandchild")
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		report("error grandchild: %v: %s", err, errb.Bytes())
	} else {
		report("grandchild\n%s", out.Bytes())
	}
	<-ctx.Done()
	return 0
}

// grandchildRole runs outside any master. By default it prints what a
// process exec'd by a worker inherited: whether it is a worker, the
// worker markers in its environment, and every open descriptor with its
// target.
func grandchildRole() int {
	switch mode := os.Getenv(grandchildEnv); mode {
	case "":
	case "privileged":
		return privilegedListen()
	default:
		fmt.Fprintf(os.Stderr, "unknown grandchild mode %q\n", mode)
		return 3
	}
	fmt.Printf("worker %v\n", sockshare.IsWorker())
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "SOCKSHARE_WORKER") {
			fmt.Printf("env %s\n", kv)
		}
	}
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	names, err := d.Readdirnames(-1)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// Readlink while the directory is open, so its own fd shows as such.
	for _, n := range names {
		target, err := os.Readlink("/proc/self/fd/" + n)
		if err != nil {
			target = "error: " + err.Error()
		}
		fmt.Printf("fd %s %s\n", n, target)
	}
	d.Close()
	return 0
}

// TestExecInheritsNoSockets: a program a worker runs inherits none of the
// sockets sharing gave the worker (IPC, listening socket, UDP socket,
// handed connection), under every policy, and is not a worker itself.
//
// What the grandchild holds is compared with a control: the same role
// exec'd by the test process itself. Both hold the Go runtime's own
// descriptors (cgroup files, epoll), and both inherit whatever the
// environment that started the test left open without close-on-exec;
// anything more came through the worker.
func TestExecInheritsNoSockets(t *testing.T) {
	control := runGrandchild(t)
	for _, p := range allPolicies {
		t.Run(string(p), func(t *testing.T) {
			t.Parallel() // own cluster and address; counts no descriptor
			// No GOMAXPROCS for the worker, so its grandchild's runtime
			// starts as the control's does.
			cfg := sockshare.Config{Workers: 1, Policy: string(p), WorkerGOMAXPROCS: -1}
			c := startCluster(t, cfg, "exec-child")
			conn, err := net.DialTimeout("tcp", tcpListening(c), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			// cond runs with the cluster's lock held: it must not Fatal.
			var listing, failed string
			c.waitFor("the grandchild's listing", 30*time.Second, func(_ []sockshare.Event, msgs []string) bool {
				for _, m := range msgs {
					if _, payload, _ := strings.Cut(m, " "); strings.HasPrefix(payload, "error") {
						failed = payload
						return true
					} else if rest, ok := strings.CutPrefix(payload, "grandchild\n"); ok {
						listing = rest
						return true
					}
				}
				return false
			})
			if failed != "" {
				t.Fatalf("worker: %s", failed)
			}
			checkGrandchildListing(t, listing, control)
		})
	}
}

// runGrandchild runs the grandchild role from the test process, with the
// stdio a worker gives it, and returns its listing.
func runGrandchild(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0])
	cmd.Env = append(os.Environ(), roleEnv+"=grandchild")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("control grandchild: %v: %s", err, errb.Bytes())
	}
	return string(out)
}

type fdListing struct {
	worker string   // "true" or "false"
	env    []string // worker markers
	stdio  []string // "n target" of 0, 1, 2
	dirs   int      // entries for the listed directory
	others []string // targets of every other descriptor
	bad    []string // unparsable lines
}

func parseFDListing(listing string) fdListing {
	var l fdListing
	for _, line := range strings.Split(strings.TrimSpace(listing), "\n") {
		f := strings.SplitN(line, " ", 3)
		switch {
		case len(f) == 2 && f[0] == "worker":
			l.worker = f[1]
		case f[0] == "env":
			l.env = append(l.env, line)
		case len(f) == 3 && f[0] == "fd":
			switch n, target := f[1], f[2]; {
			case n == "0" || n == "1" || n == "2":
				l.stdio = append(l.stdio, n+" "+target)
			case strings.HasPrefix(target, "/proc/") && strings.HasSuffix(target, "/fd"):
				l.dirs++
			default:
				l.others = append(l.others, target)
			}
		default:
			l.bad = append(l.bad, line)
		}
	}
	return l
}

func checkGrandchildListing(t *testing.T, listing, control string) {
	t.Helper()
	got, want := parseFDListing(listing), parseFDListing(control)
	var bad []string
	if got.worker != "false" {
		bad = append(bad, "the grandchild is a worker: "+got.worker)
	}
	for _, e := range got.env {
		bad = append(bad, "worker marker inherited: "+e)
	}
	for _, e := range got.stdio {
		if strings.Contains(e, "socket:") {
			bad = append(bad, "socket as stdio: "+e)
		}
	}
	if got.dirs != 1 {
		bad = append(bad, fmt.Sprintf("%d entries for the listed directory, want 1", got.dirs))
	}
	for _, l := range got.bad {
		bad = append(bad, "unexpected line: "+l)
	}
	// Every other descriptor must be one the control holds too.
	left := slices.Clone(want.others)
	for _, target := range got.others {
		if i := slices.Index(left, target); i >= 0 {
			left = slices.Delete(left, i, i+1)
			continue
		}
		bad = append(bad, "inherited through the worker: "+target)
	}
	if len(bad) > 0 {
		t.Errorf("grandchild:\n  %s\nlisting:\n%s\ncontrol (exec'd by the test process):\n%s", strings.Join(bad, "\n  "), listing, control)
	}
}

// ---------------------------------------------------------------------
// Descriptor hygiene: a worker at RLIMIT_NOFILE

// rlimitSlot0Worker serves HTTP. In slot 0 it first makes sure no new
// descriptor can be installed in it: soft RLIMIT_NOFILE just above its
// highest open descriptor, and every free number below that taken. Every
// connection handed to it then arrives with MSG_CTRUNC and no descriptor.
func rlimitSlot0Worker() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	ln, err := sockshare.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 2
	}
	if sockshare.Slot() == 0 {
		limit, filled, err := exhaustFDs()
		if err != nil {
			sockshare.Send([]byte("rlimit-error " + err.Error()))
			<-ctx.Done()
			return 2
		}
		sockshare.Send([]byte(fmt.Sprintf("rlimit-set limit=%d filled=%d", limit, filled)))
	}
	return serveHTTP(ctx, ln)
}

// exhaustFDs lowers the soft RLIMIT_NOFILE to one above the highest open
// descriptor and fills every hole below it, so that the table is full.
// The fillers are raw descriptors, never closed: no finalizer frees them.
func exhaustFDs() (limit uint64, filled int, err error) {
	names, err := readDirNames("/proc/self/fd")
	if err != nil {
		return 0, 0, err
	}
	highest := 0
	for _, n := range names {
		if fd, err := strconv.Atoi(n); err == nil && fd > highest {
			highest = fd
		}
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, 0, err
	}
	rl.Cur = uint64(highest) + 1
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, 0, err
	}
	for {
		_, err := syscall.Open("/dev/null", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if errors.Is(err, syscall.EMFILE) {
			return rl.Cur, filled, nil
		}
		if err != nil {
			return 0, 0, err
		}
		filled++
	}
}

func readDirNames(dir string) ([]string, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.Readdirnames(-1)
}

// TestWorkerAtFDLimit: under rr, a worker that cannot install one more
// descriptor gets every handoff truncated by the kernel; it hands the
// connections back and the master gives them to the other worker. Every
// request succeeds, the full worker takes none, and the master leaks
// nothing.
func TestWorkerAtFDLimit(t *testing.T) {
	c := startCluster(t, sockshare.Config{Workers: 2, Policy: "rr"}, "rlimit-slot0")
	var note string
	c.waitFor("slot 0 at its descriptor limit", 20*time.Second, func(_ []sockshare.Event, msgs []string) bool {
		for _, m := range msgs {
			if strings.Contains(m, "rlimit-error") || strings.Contains(m, "rlimit-set") {
				note = m
				return true
			}
		}
		return false
	})
	if strings.Contains(note, "rlimit-error") {
		t.Fatalf("slot 0: %s", note)
	}
	t.Logf("slot 0: %s", note)
	full, other := workerInSlot(t, c, 0), workerInSlot(t, c, 1)
	before := quietFDs(t, c)

	const n = 200
	per, errs := tally(load(c.addr, "/", n, 8))
	if len(errs) > 0 {
		t.Fatalf("%d of %d requests failed, first: %v", len(errs), n, errs[0])
	}
	if per[strconv.Itoa(other.ID)] != n {
		t.Errorf("per worker %v; want all %d from worker %d (slot 1)", per, n, other.ID)
	}
	if after := waitFDs(t, c, before); after-before > 2 || before-after > 2 {
		t.Errorf("master fds: %d before, %d after %d requests", before, after, n)
	}
	// Without the hand-back rr would have given slot 0 half of them.
	got := map[int]sockshare.WorkerInfo{}
	for _, w := range c.m.Workers() {
		got[w.Slot] = w
	}
	if w := got[0]; w.ID != full.ID || w.Taken != 0 || w.Inflight != 0 {
		t.Errorf("slot 0 after the load: %+v; want worker %d alive, nothing accepted or in flight", w, full.ID)
	}
	if w := got[1]; w.ID != other.ID || w.Taken != n {
		t.Errorf("slot 1 after the load: %+v; want worker %d with %d accepted", w, other.ID, n)
	}
}

// TestFDsAfter100kHandoffs: the master's descriptor count after 100,000
// rr handoffs is within 2 of the count before them. It takes about a
// minute, so it runs only with SOCKSHARE_LONG=1.
func TestFDsAfter100kHandoffs(t *testing.T) {
	if os.Getenv("SOCKSHARE_LONG") != "1" {
		t.Skip("set SOCKSHARE_LONG=1 to run 100,000 handoffs")
	}
	c := startCluster(t, sockshare.Config{Workers: 2, Policy: "rr"}, "http")
	if _, errs := tally(load(c.addr, "/", 100, 8)); len(errs) > 0 {
		t.Fatal(errs[0])
	}
	before := quietFDs(t, c)
	const n = 100_000
	start := time.Now()
	per, errs := tally(load(c.addr, "/", n, 16))
	elapsed := time.Since(start)
	if len(errs) > 0 {
		t.Fatalf("%d of %d failed, first: %v", len(errs), n, errs[0])
	}
	after := waitFDs(t, c, before)
	t.Logf("%d handoffs in %v (%.0f/s), per worker %v; master fds %d before, %d after",
		n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), per, before, after)
	if d := after - before; d > 2 || d < -2 {
		t.Fatalf("master fds: %d before, %d after %d handoffs", before, after, n)
	}
}

// ---------------------------------------------------------------------
// No filesystem path

// TestIPCHasNoPath: while a cluster runs, every unix socket the master
// and its workers hold is unnamed (neither a filesystem path nor an
// abstract name), so no other process can connect to the IPC; and the
// master holds one SOCK_SEQPACKET socket per worker.
func TestIPCHasNoPath(t *testing.T) {
	c := startCluster(t, sockshare.Config{Workers: 2, Policy: "rr"}, "http")
	table := unixSockets(t)
	pids := []int{os.Getpid()}
	for _, w := range c.m.Workers() {
		pids = append(pids, w.PID)
	}
	for i, pid := range pids {
		seqpackets := 0
		for _, ino := range socketInodesOf(t, pid) {
			s, ok := table[ino]
			if !ok {
				continue // not a unix socket
			}
			if s.path != "" {
				t.Errorf("pid %d holds a named unix socket %q", pid, s.path)
			}
			if s.typ == syscall.SOCK_SEQPACKET {
				seqpackets++
			}
		}
		want := 1 // a worker's end
		if i == 0 {
			want = len(pids) - 1 // the master's ends
		}
		if seqpackets < want {
			t.Errorf("pid %d holds %d SOCK_SEQPACKET unix sockets; want at least %d", pid, seqpackets, want)
		}
	}
}

type unixSocket struct {
	typ  int
	path string
}

// unixSockets parses /proc/net/unix: inode to type and path ("" when
// unnamed; abstract names start with '@').
func unixSockets(t *testing.T) map[string]unixSocket {
	t.Helper()
	b, err := os.ReadFile("/proc/net/unix")
	if err != nil {
		t.Skipf("cannot read /proc/net/unix: %v", err)
	}
	out := map[string]unixSocket{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Scan() // header
	for sc.Scan() {
		// Num RefCount Protocol Flags Type St Inode [Path]
		f := strings.Fields(sc.Text())
		if len(f) < 7 {
			continue
		}
		typ, _ := strconv.ParseInt(f[4], 16, 32)
		s := unixSocket{typ: int(typ)}
		if len(f) > 7 {
			s.path = f[7]
		}
		out[f[6]] = s
	}
	return out
}

// socketInodesOf lists the socket inodes among pid's descriptors.
func socketInodesOf(t *testing.T, pid int) []string {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	names, err := readDirNames(dir)
	if err != nil {
		t.Fatalf("listing %s: %v", dir, err)
	}
	var inos []string
	for _, n := range names {
		target, err := os.Readlink(filepath.Join(dir, n))
		if ino, ok := strings.CutPrefix(target, "socket:["); err == nil && ok {
			inos = append(inos, strings.TrimSuffix(ino, "]"))
		}
	}
	return inos
}

// ---------------------------------------------------------------------
// Bad input

const validPolicies = "(valid: shared, rr, leastconn, reuseport, sticky)"

// TestBadConfigErrors: every configuration NewMaster refuses, with the
// exact text and the sentinels; Workers 0 is NumCPU by design; a program
// that cannot start fails Run at once.
func TestBadConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   sockshare.Config
		env   string // SOCKSHARE_POLICY
		text  string
		is    []error
		isNot []error
	}{
		{name: "unknown policy", cfg: sockshare.Config{Policy: "x"},
			text: `sockshare: bad config: unknown policy "x" ` + validPolicies,
			is:   []error{sockshare.ErrBadConfig, policy.ErrUnknownPolicy}},
		{name: "unknown policy in the environment", env: "bogus",
			text: `sockshare: bad config: SOCKSHARE_POLICY: unknown policy "bogus" ` + validPolicies,
			is:   []error{sockshare.ErrBadConfig, policy.ErrUnknownPolicy}},
		{name: "negative workers", cfg: sockshare.Config{Workers: -1},
			text: "sockshare: bad config: workers must be between 1 and 1024, got -1",
			is:   []error{sockshare.ErrBadConfig}, isNot: []error{policy.ErrUnknownPolicy}},
		{name: "absurd workers", cfg: sockshare.Config{Workers: sockshare.MaxWorkers + 1},
			text: "sockshare: bad config: workers must be between 1 and 1024, got 1025",
			is:   []error{sockshare.ErrBadConfig}},
		{name: "negative duration", cfg: sockshare.Config{ShutdownTimeout: -time.Second},
			text: "sockshare: bad config: ShutdownTimeout must not be negative, got -1s",
			is:   []error{sockshare.ErrBadConfig}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(policy.EnvVar, tc.env)
			m, err := sockshare.NewMaster(tc.cfg)
			if err == nil {
				t.Fatalf("NewMaster succeeded (%d workers)", m.NumWorkers())
			}
			if err.Error() != tc.text {
				t.Errorf("error text:\n got %s\nwant %s", err, tc.text)
			}
			for _, s := range tc.is {
				if !errors.Is(err, s) {
					t.Errorf("errors.Is(err, %v) = false", s)
				}
			}
			for _, s := range tc.isNot {
				if errors.Is(err, s) {
					t.Errorf("errors.Is(err, %v) = true", s)
				}
			}
		})
	}

	t.Run("zero workers means NumCPU", func(t *testing.T) {
		m, err := sockshare.NewMaster(sockshare.Config{Workers: 0})
		if err != nil || m.NumWorkers() != runtime.NumCPU() {
			t.Fatalf("NewMaster(Workers: 0) = %v; want %d workers", err, runtime.NumCPU())
		}
	})

	t.Run("program that does not exist", func(t *testing.T) {
		m, err := sockshare.NewMaster(sockshare.Config{Workers: 2, Program: "/nonexistent/worker", Args: []string{}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		err = m.Run(ctx)
		want := "sockshare: start worker for slot 0: fork/exec /nonexistent/worker: no such file or directory"
		if err == nil || err.Error() != want || !errors.Is(err, fs.ErrNotExist) || ctx.Err() != nil {
			t.Fatalf("Run = %v; want at once %q matching fs.ErrNotExist", err, want)
		}
	})

	t.Run("send to no such worker", func(t *testing.T) {
		m, err := sockshare.NewMaster(sockshare.Config{Workers: 1})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Send(99, []byte("hi")); !errors.Is(err, sockshare.ErrUnknownWorker) || err.Error() != "sockshare: no such worker: 99" {
			t.Errorf("Send to worker 99: %v; want ErrUnknownWorker", err)
		}
	})

	t.Run("send outside a worker", func(t *testing.T) {
		if err := sockshare.Send([]byte("hi")); !errors.Is(err, sockshare.ErrNotWorker) {
			t.Errorf("Send outside a worker: %v; want ErrNotWorker", err)
		}
	})
}

// listenCase is one bad Listen and what it must return. The same cases
// run standalone (in the test process) and in a worker, where the text
// gains the policy.
type listenCase struct {
	name    string
	packet  bool // ListenPacket instead of Listen
	network string
	addr    string // "@" is replaced by the address the first worker holds
	policy  string // ListenConfig.Policy
	// text is the standalone error; worker is the error in a worker when
	// it differs ("" means the same as text).
	text, worker string
	is           []string // sentinel names, see sentinels
}

var sentinels = map[string]error{
	"ErrNetwork":        sockshare.ErrNetwork,
	"ErrPolicyConflict": sockshare.ErrPolicyConflict,
	"ErrUnknownPolicy":  policy.ErrUnknownPolicy,
	"EADDRINUSE":        syscall.EADDRINUSE,
}

var listenCases = []listenCase{
	{name: "udp to Listen", network: "udp", addr: "127.0.0.1:0",
		text: `listen udp: sockshare: unsupported network "udp" (want tcp, tcp4 or tcp6; ListenPacket serves udp)`,
		is:   []string{"ErrNetwork"}},
	{name: "tcp to ListenPacket", packet: true, network: "tcp", addr: "127.0.0.1:0",
		text: `listen tcp: sockshare: unsupported network "tcp" (want udp, udp4 or udp6; Listen serves tcp)`,
		is:   []string{"ErrNetwork"}},
	{name: "unix to Listen", network: "unix", addr: "/tmp/x.sock",
		text: `listen unix: sockshare: unsupported network "unix" (want tcp, tcp4 or tcp6; ListenPacket serves udp)`,
		is:   []string{"ErrNetwork"}},
	{name: "malformed address", network: "tcp", addr: "not an address",
		text:   "listen tcp: address not an address: missing port in address",
		worker: `listen tcp not an address: policy "rr": address not an address: missing port in address`},
	{name: "malformed packet address", packet: true, network: "udp", addr: "127.0.0.1",
		text:   "listen udp: address 127.0.0.1: missing port in address",
		worker: `listen udp 127.0.0.1: policy "shared": address 127.0.0.1: missing port in address`},
	{name: "port out of range", network: "tcp", addr: "127.0.0.1:99999",
		text:   "listen tcp: address 99999: invalid port",
		worker: `listen tcp 127.0.0.1:99999: policy "rr": address 99999: invalid port`},
	{name: "packet port out of range", packet: true, network: "udp", addr: "127.0.0.1:99999",
		text:   "listen udp: address 99999: invalid port",
		worker: `listen udp 127.0.0.1:99999: policy "shared": address 99999: invalid port`},
}

// workerOnlyCases exist only in a worker: outside one there is no other
// worker to conflict with. (An unknown policy is refused standalone too:
// TestStandaloneListenIsPlain.)
var workerOnlyCases = []listenCase{
	{name: "unknown policy", network: "tcp", addr: "127.0.0.1:0", policy: "x",
		worker: `listen tcp 127.0.0.1:0: policy "x": unknown policy "x" ` + validPolicies,
		is:     []string{"ErrUnknownPolicy"}},
	{name: "unknown packet policy", packet: true, network: "udp", addr: "127.0.0.1:0", policy: "x",
		worker: `listen udp 127.0.0.1:0: policy "x": unknown policy "x" ` + validPolicies,
		is:     []string{"ErrUnknownPolicy"}},
	// The first worker listens on "127.0.0.1:0" under rr: the same
	// address string (and the same n-th Listen) is the same group.
	{name: "policy conflict", network: "tcp", addr: "127.0.0.1:0", policy: "reuseport",
		worker: `listen tcp 127.0.0.1:0: policy "reuseport": address already shared under another policy: tcp 127.0.0.1:0 is served under "rr", not "reuseport"`,
		is:     []string{"ErrPolicyConflict"}},
	// The port that group resolved, spelled out, is another group: its
	// bind meets the rr socket.
	{name: "resolved port under another policy", network: "tcp", addr: "@", policy: "reuseport",
		worker: `listen tcp @: policy "reuseport": bind: address already in use`,
		is:     []string{"EADDRINUSE"}},
}

// listenResult is what a bad Listen returned, as a worker reports it.
type listenResult struct {
	Name string
	Err  string          // "" when it succeeded
	Is   map[string]bool // sentinel name -> errors.Is
}

func runListenCase(ctx context.Context, lc listenCase, held string) listenResult {
	addr := strings.ReplaceAll(lc.addr, "@", held)
	cfg := sockshare.ListenConfig{Policy: lc.policy}
	var err error
	if lc.packet {
		var pc net.PacketConn
		if pc, err = cfg.ListenPacket(ctx, lc.network, addr); err == nil {
			pc.Close()
		}
	} else {
		var ln net.Listener
		if ln, err = cfg.Listen(ctx, lc.network, addr); err == nil {
			ln.Close()
		}
	}
	r := listenResult{Name: lc.name, Is: map[string]bool{}}
	if err != nil {
		r.Err = err.Error()
		for name, s := range sentinels {
			r.Is[name] = errors.Is(err, s)
		}
	}
	return r
}

func checkListenResult(t *testing.T, lc listenCase, r listenResult, want, held string) {
	t.Helper()
	want = strings.ReplaceAll(want, "@", held)
	if r.Err != want {
		t.Errorf("%s: error\n got %s\nwant %s", lc.name, r.Err, want)
	}
	for name := range sentinels {
		if w := slices.Contains(lc.is, name); r.Is[name] != w {
			t.Errorf("%s: errors.Is(err, %s) = %v, want %v", lc.name, name, r.Is[name], w)
		}
	}
}

// TestBadListenStandalone: outside a master, bad networks and addresses
// fail at once with errors that name them.
func TestBadListenStandalone(t *testing.T) {
	for _, lc := range listenCases {
		r := runListenCase(context.Background(), lc, "")
		checkListenResult(t, lc, r, lc.text, "")
	}
	// The standalone address errors are net's own.
	_, err := sockshare.Listen("tcp", "not an address")
	if ae := (*net.AddrError)(nil); !errors.As(err, &ae) {
		t.Errorf("standalone malformed address: %v; want a *net.AddrError", err)
	}
}

// badInputWorker: slot 0 listens on 127.0.0.1:0 and serves. Slot 1 only
// listens on UDP (to count as listening), waits for "go <address slot 0
// holds>", then runs every bad Listen and reports the results as JSON.
// Then it checks that Send refuses an oversized payload and that a valid
// Listen still succeeds.
func badInputWorker() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	start := make(chan string, 1)
	sockshare.HandleMessages(func(p []byte) {
		if held, ok := strings.CutPrefix(string(p), "go "); ok {
			start <- held
		}
	})
	if sockshare.Slot() == 0 {
		ln, err := sockshare.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 2
		}
		return serveHTTP(ctx, ln)
	}
	pc, err := sockshare.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return 2
	}
	defer pc.Close()
	var held string
	select {
	case held = <-start:
	case <-ctx.Done():
		return 0
	}
	var rs []listenResult
	for _, lc := range append(slices.Clone(listenCases), workerOnlyCases...) {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		rs = append(rs, runListenCase(lctx, lc, held))
		cancel()
	}
	b, _ := json.Marshal(rs)
	sockshare.Send(append([]byte("results "), b...))

	if err := sockshare.Send(make([]byte, ipc.MaxMessage)); err != nil {
		sockshare.Send([]byte("oversized send: " + err.Error()))
	} else {
		sockshare.Send([]byte("oversized send: no error"))
	}
	ln, err := sockshare.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		sockshare.Send([]byte("valid listen: " + err.Error()))
	} else {
		sockshare.Send([]byte("valid listen: ok"))
		defer ln.Close()
	}
	<-ctx.Done()
	return 0
}

// TestBadListenInWorker: the same bad Listens in a worker, plus an unknown
// ListenConfig.Policy and a policy conflict with another worker's address,
// each come back as an error naming address, policy and cause, with the
// sentinel matching across the process boundary; the master keeps
// serving and the worker can still listen afterwards.
func TestBadListenInWorker(t *testing.T) {
	var logs logSink
	c := startCluster(t, sockshare.Config{Workers: 2, Policy: "rr", Logger: slog.New(slog.NewTextHandler(&logs, nil))}, "bad-input")
	held := tcpListening(c)
	asker := workerInSlot(t, c, 1)
	if err := c.m.Send(asker.ID, []byte("go "+held)); err != nil {
		t.Fatal(err)
	}
	var rs []listenResult
	if err := json.Unmarshal([]byte(message(c, "results ", 30*time.Second)), &rs); err != nil {
		t.Fatal(err)
	}
	cases := append(slices.Clone(listenCases), workerOnlyCases...)
	if len(rs) != len(cases) {
		t.Fatalf("%d results for %d cases", len(rs), len(cases))
	}
	for i, lc := range cases {
		want := lc.worker
		if want == "" {
			want = lc.text
		}
		checkListenResult(t, lc, rs[i], want, held)
	}
	// 64 KiB of payload, its length and the header make 65541 bytes.
	const tooLarge = "ipc: encode user: 65541 bytes exceeds the 65536-byte limit"
	if got := message(c, "oversized send: ", 10*time.Second); got != tooLarge {
		t.Errorf("worker's oversized Send: %s; want %s", got, tooLarge)
	}
	if got := message(c, "valid listen: ", 10*time.Second); got != "ok" {
		t.Errorf("a valid Listen after the bad ones: %s", got)
	}
	if err := c.m.Send(asker.ID, make([]byte, ipc.MaxMessage)); err == nil || err.Error() != tooLarge {
		t.Errorf("master's oversized Send: %v; want %s", err, tooLarge)
	}
	// The master survived all of it: the first worker still serves, and
	// nobody was killed.
	if r := get(held, "/"); r.err != nil || r.status != 200 {
		t.Errorf("after the bad input: %+v", r)
	}
	if ws := c.m.Workers(); len(ws) != 2 {
		t.Errorf("workers after the bad input: %+v", ws)
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("bad Listens made the master log errors:\n%s", logs.String())
	}
}

// TestPolicyConflictEvent: the master's listen-error event for a policy
// conflict matches ErrPolicyConflict too.
func TestPolicyConflictEvent(t *testing.T) {
	c := startCluster(t, sockshare.Config{Workers: 2, Policy: "rr"}, "bad-input")
	held := tcpListening(c)
	if err := c.m.Send(workerInSlot(t, c, 1).ID, []byte("go "+held)); err != nil {
		t.Fatal(err)
	}
	var ev sockshare.Event
	c.waitFor("the conflict's listen-error event", 30*time.Second, func(evs []sockshare.Event, _ []string) bool {
		for _, e := range evs {
			if e.Type == sockshare.EventListenError && e.Err != nil && strings.Contains(e.Err.Error(), "another policy") {
				ev = e
				return true
			}
		}
		return false
	})
	if !errors.Is(ev.Err, sockshare.ErrPolicyConflict) {
		t.Errorf("listen-error event %v does not match ErrPolicyConflict", ev)
	}
}

// ---------------------------------------------------------------------
// Privileged port

// privilegedWorker reports its Listen of $SOCKSHARE_TEST_HARDENING_ADDR.
func privilegedWorker() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	ln, err := sockshare.Listen("tcp", os.Getenv(hardeningAddrEnv))
	if err == nil {
		ln.Close()
	}
	sockshare.Send([]byte(fmt.Sprintf("eacces=%v %v", errors.Is(err, syscall.EACCES), err)))
	<-ctx.Done()
	return 0
}

// privilegedListen (the "privileged" grandchild) listens on
// $SOCKSHARE_TEST_HARDENING_ADDR standalone, then runs a master whose
// worker does the same, and prints both results.
func privilegedListen() int {
	addr := os.Getenv(hardeningAddrEnv)
	ln, err := sockshare.Listen("tcp", addr)
	if err == nil {
		ln.Close()
	}
	fmt.Printf("standalone eacces=%v %v\n", errors.Is(err, syscall.EACCES), err)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	env := []string{roleEnv + "=privileged-worker"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, roleEnv+"=") {
			env = append(env, kv)
		}
	}
	var once sync.Once
	m, err := sockshare.NewMaster(sockshare.Config{
		Workers: 1, Policy: "rr", Program: os.Args[0], Args: []string{}, Env: env,
		ShutdownTimeout: 5 * time.Second,
		OnMessage: func(_ int, p []byte) {
			once.Do(func() {
				fmt.Printf("worker %s\n", p)
				cancel()
			})
		},
	})
	if err != nil {
		fmt.Printf("master %v\n", err)
		return 1
	}
	if err := m.Run(ctx); err != nil {
		fmt.Printf("master %v\n", err)
		return 1
	}
	return 0
}

// TestPrivilegedPort: a port below net.ipv4.ip_unprivileged_port_start,
// without the capability to bind it, fails with EACCES, standalone and in
// a worker. As root the test runs its processes as nobody (uid 65534)
// from a copy of the test binary that nobody may execute.
func TestPrivilegedPort(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	start, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || start < 2 {
		t.Skipf("no privileged ports here (ip_unprivileged_port_start %q, %v)", b, err)
	}
	addr := "127.0.0.1:1"
	bin := os.Args[0]
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		dir, err := os.MkdirTemp("", "sockshare-unpriv-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		bin = filepath.Join(dir, "sockshare.test")
		if err := copyFile(bin, os.Args[0], 0o755); err != nil {
			t.Fatal(err)
		}
		cred = &syscall.Credential{Uid: 65534, Gid: 65534}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Dir = filepath.Dir(bin)
	cmd.Env = append(os.Environ(), roleEnv+"=grandchild", grandchildEnv+"=privileged", hardeningAddrEnv+"="+addr)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("unprivileged process: %v\nstdout:\n%s\nstderr:\n%s", err, out, errb.Bytes())
	}
	want := "standalone eacces=true listen tcp 127.0.0.1:1: bind: permission denied\n" +
		`worker eacces=true listen tcp 127.0.0.1:1: policy "rr": bind: permission denied` + "\n"
	if string(out) != want {
		t.Errorf("unprivileged process printed\n%s\nwant\n%s\nstderr:\n%s", out, want, errb.Bytes())
	}
}

func copyFile(dst, src string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// ---------------------------------------------------------------------
// Capabilities

// TestCapabilitiesLinux: on Linux every feature sockshare uses is there,
// nothing is degraded, and the report agrees with package reuse.
func TestCapabilitiesLinux(t *testing.T) {
	p := sockshare.Probe()
	rc := reuse.Probe()
	if !p.FDPassing || !p.ReusePort || !p.ReusePortBalancing {
		t.Errorf("Probe() = %+v; want fd passing and a balancing SO_REUSEPORT on Linux", p)
	}
	if p.CBPFSteering != rc.CBPFSteering || p.MigrateReq != rc.MigrateReq || p.Note != rc.Note {
		t.Errorf("Probe() = %+v; reuse.Probe() = %+v", p, rc)
	}
	for _, n := range policy.Names() {
		if w := p.Degraded(n); w != "" {
			t.Errorf("Degraded(%s) = %q on Linux", n, w)
		}
	}
	// Kernel dispatch: whatever the probe says, and NewMaster agrees.
	_, err := sockshare.NewMaster(sockshare.Config{Workers: 1, Dispatch: sockshare.DispatchKernel})
	if p.KernelDispatch != (err == nil) || (err != nil && !errors.Is(err, errors.ErrUnsupported)) {
		t.Errorf("KernelDispatch = %v (%v), but NewMaster with Dispatch kernel: %v", p.KernelDispatch, p.KernelDispatchErr, err)
	}
	if os.Geteuid() == 0 && !p.KernelDispatch {
		t.Logf("kernel dispatch unavailable as root: %v", p.KernelDispatchErr)
	}
	if _, err := sockshare.NewMaster(sockshare.Config{Workers: 1, Dispatch: "userspace"}); !errors.Is(err, sockshare.ErrBadConfig) || !strings.Contains(err.Error(), `unknown dispatch "userspace"`) {
		t.Errorf("NewMaster with Dispatch userspace: %v; want ErrBadConfig naming it", err)
	}
}

// TestDegraded: the warnings for platforms without fd passing or without
// balancing, by policy name or alias.
func TestDegraded(t *testing.T) {
	noPassing := sockshare.Capabilities{ReusePort: true, ReusePortBalancing: true}
	noBalance := sockshare.Capabilities{FDPassing: true, ReusePort: true}
	noReuse := sockshare.Capabilities{FDPassing: true, Note: "sockets cannot share"}
	full := sockshare.Capabilities{FDPassing: true, ReusePort: true, ReusePortBalancing: true}
	goos := runtime.GOOS
	for _, tc := range []struct {
		p    sockshare.Capabilities
		name policy.Name
		want string
	}{
		{noPassing, "rr", `policy "rr" is not available on ` + goos + ": no descriptor passing, so no master; each process would serve the address alone"},
		{noPassing, "round-robin", `policy "rr" is not available on ` + goos + ": no descriptor passing, so no master; each process would serve the address alone"},
		{noPassing, "reuseport", `policy "reuseport" is not available on ` + goos + ": no descriptor passing, so no master; each process would serve the address alone"},
		{noBalance, "reuseport", `policy "reuseport" is degraded on ` + goos + ": SO_REUSEPORT binds but the kernel does not balance, so one worker may get every connection; rr or leastconn balance here"},
		{noBalance, "rr", ""},
		{noBalance, "shared", ""},
		{noReuse, "reuseport", `policy "reuseport" is not available on ` + goos + ": sockets cannot share an address (sockets cannot share)"},
		{full, "reuseport", ""},
		{full, "bogus", ""},
		{noPassing, "bogus", ""},
	} {
		if got := tc.p.Degraded(tc.name); got != tc.want {
			t.Errorf("%+v.Degraded(%q)\n got %q\nwant %q", tc.p, tc.name, got, tc.want)
		}
	}
}

// TestFDPassingProbeLeaksNothing: the probe behind Capabilities closes
// every descriptor it opens.
func TestFDPassingProbeLeaksNothing(t *testing.T) {
	sockshare.ProbeFDPassingForTest() // the first socket sets up the netpoller
	before := openFDs(t)
	for range 10 {
		if err := sockshare.ProbeFDPassingForTest(); err != nil {
			t.Fatal(err)
		}
	}
	if after := openFDs(t); after != before {
		t.Fatalf("fds: %d before 10 probes, %d after", before, after)
	}
}
