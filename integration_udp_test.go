//go:build linux

package sockshare_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockshare/sockshare"
	"github.com/sockshare/sockshare/policy"
	"github.com/sockshare/sockshare/reuse"
)

// Environment of the udpecho role and of the UDP master helper process.
const (
	// udpPolicyEnv, if set, is the worker's ListenConfig.Policy.
	udpPolicyEnv = "SOCKSHARE_TEST_UDP_POLICY"
	// udpMasterEnv makes TestUDPMasterProcess run a master under the
	// policy it names, for TestUDPWorkersDieWithMaster.
	udpMasterEnv = "SOCKSHARE_TEST_UDP_MASTER"
)

// Bounds for UDP clients: a datagram unanswered after udpAnswerWait is
// sent again, udpTries times in all. Loopback drops datagrams when a
// receive buffer is full, which happens on a loaded machine.
const (
	udpAnswerWait = 500 * time.Millisecond
	udpTries      = 8
)

func init() {
	roles["udpecho"] = udpEchoWorker
}

// udpEchoWorker answers every datagram with "<worker id> <payload>" on the
// address from addrEnv (default 127.0.0.1:0). SIGTERM ends the read loop
// and the worker exits 0.
func udpEchoWorker() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	addr := os.Getenv(addrEnv)
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	lc := sockshare.ListenConfig{Policy: os.Getenv(udpPolicyEnv)}
	pc, err := lc.ListenPacket(ctx, "udp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker listen:", err)
		sockshare.Send([]byte("listen-error " + err.Error()))
		<-ctx.Done()
		return 2
	}
	conn := pc.(*net.UDPConn)
	defer conn.Close()
	// A read deadline in the past ends the blocked read without losing
	// the reply to the datagram read last, as closing could.
	go func() {
		<-ctx.Done()
		conn.SetReadDeadline(time.Now())
	}()
	prefix := strconv.Itoa(sockshare.WorkerID()) + " "
	buf := make([]byte, 64<<10)
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil && ctx.Err() != nil {
			return 0
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "worker read:", err)
			return 1
		}
		conn.WriteToUDPAddrPort(append([]byte(prefix), buf[:n]...), from)
	}
}

// udpFlow is one client socket (one flow, one 4-tuple) and the record of
// its datagrams: how often each payload was sent, which workers answered.
type udpFlow struct {
	c       *net.UDPConn
	valid   map[int]bool // worker ids an answer may name
	sent    map[string]int
	answers map[string][]int
	errs    []error
}

func newUDPFlow(t *testing.T, addr string, valid map[int]bool) *udpFlow {
	t.Helper()
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		t.Fatal(err)
	}
	return &udpFlow{c: c, valid: valid, sent: map[string]int{}, answers: map[string][]int{}}
}

// exchange sends payloads and reads until each has an answer; what is
// still unanswered after udpAnswerWait is sent again, up to udpTries times
// in all. Late answers to earlier payloads are recorded as they come.
func (f *udpFlow) exchange(payloads ...string) {
	pending := map[string]bool{}
	for _, p := range payloads {
		pending[p] = true
	}
	buf := make([]byte, 2048)
	for try := 0; try < udpTries && len(pending) > 0; try++ {
		for p := range pending {
			f.sent[p]++
			if _, err := f.c.Write([]byte(p)); err != nil {
				f.errs = append(f.errs, fmt.Errorf("send %q: %w", p, err))
				return
			}
		}
		f.c.SetReadDeadline(time.Now().Add(udpAnswerWait))
		for len(pending) > 0 {
			n, err := f.c.Read(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				f.errs = append(f.errs, fmt.Errorf("read: %w", err))
				return
			}
			if p, ok := f.record(string(buf[:n])); ok {
				delete(pending, p)
			}
		}
	}
}

// record files one answer, "<worker id> <payload>".
func (f *udpFlow) record(answer string) (string, bool) {
	idStr, payload, _ := strings.Cut(answer, " ")
	id, err := strconv.Atoi(idStr)
	if err != nil || !f.valid[id] {
		f.errs = append(f.errs, fmt.Errorf("answer %q does not name a listening worker %v", answer, f.valid))
		return "", false
	}
	if f.sent[payload] == 0 {
		f.errs = append(f.errs, fmt.Errorf("answer %q echoes a payload never sent", answer))
		return "", false
	}
	f.answers[payload] = append(f.answers[payload], id)
	return payload, true
}

// finish reads late answers for a moment, so that a duplicate answer to
// the last payloads is seen too, and closes the socket.
func (f *udpFlow) finish() {
	buf := make([]byte, 2048)
	f.c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	for {
		n, err := f.c.Read(buf)
		if err != nil {
			break
		}
		f.record(string(buf[:n]))
	}
	f.c.Close()
}

// check fails the test for errors, for a payload never answered and for a
// payload answered more often than it was sent.
func (f *udpFlow) check(t *testing.T, name string) {
	t.Helper()
	for _, err := range f.errs {
		t.Errorf("%s: %v", name, err)
	}
	for p, n := range f.sent {
		switch a := len(f.answers[p]); {
		case a == 0:
			t.Errorf("%s: %q sent %d times, never answered", name, p, n)
		case a > n:
			t.Errorf("%s: %q sent %d times, answered %d times (by %v)", name, p, n, a, f.answers[p])
		}
	}
}

// perWorker counts this flow's answers by worker id.
func (f *udpFlow) perWorker() map[int]int {
	per := map[int]int{}
	for _, ids := range f.answers {
		for _, id := range ids {
			per[id]++
		}
	}
	return per
}

// udpFlows runs n client sockets at once, each sending perFlow datagrams
// one at a time (the next once the previous is answered), checks every
// flow and returns them, closed.
func udpFlows(t *testing.T, c *cluster, n, perFlow int) []*udpFlow {
	t.Helper()
	valid := map[int]bool{}
	for id := range udpListening(c) {
		valid[id] = true
	}
	flows := make([]*udpFlow, n)
	for i := range flows {
		flows[i] = newUDPFlow(t, c.addr, valid)
	}
	var wg sync.WaitGroup
	for i, f := range flows {
		wg.Go(func() {
			for k := range perFlow {
				f.exchange(fmt.Sprintf("flow %d datagram %d", i, k))
			}
			f.finish()
		})
	}
	wg.Wait()
	for i, f := range flows {
		f.check(t, fmt.Sprintf("flow %d", i))
	}
	return flows
}

// udpListening returns the EventListening of every worker so far, by id.
func udpListening(c *cluster) map[int]sockshare.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[int]sockshare.Event{}
	for _, e := range c.events {
		if e.Type == sockshare.EventListening {
			out[e.WorkerID] = e
		}
	}
	return out
}

// udpCount counts the events of type typ so far.
func udpCount(c *cluster, typ sockshare.EventType) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, e := range c.events {
		if e.Type == typ {
			n++
		}
	}
	return n
}

// TestUDPSharedAnswersEveryDatagramOnce: under shared, 256 client sockets
// each send 8 datagrams; every datagram is answered, none more often than
// it was sent, by a listening worker.
func TestUDPSharedAnswersEveryDatagramOnce(t *testing.T) {
	c := startCluster(t, sockshare.Config{Workers: 2, Policy: "shared"}, "udpecho")
	for id, e := range udpListening(c) {
		if e.Policy != policy.Shared || e.Network != "udp" {
			t.Errorf("worker %d listens on %s under %q, want udp under shared", id, e.Network, e.Policy)
		}
	}
	flows := udpFlows(t, c, 256, 8)
	total := map[int]int{}
	for _, f := range flows {
		for id, n := range f.perWorker() {
			total[id] += n
		}
	}
	t.Logf("answers per worker: %v", total)
}

// TestUDPReusePortFlowsStick: under reuseport every flow is answered by
// one worker only, and 256 flows spread over all three workers.
func TestUDPReusePortFlowsStick(t *testing.T) {
	const workers, nflows = 3, 256
	c := startCluster(t, sockshare.Config{Workers: workers, Policy: "reuseport"}, "udpecho")
	flows := udpFlows(t, c, nflows, 4)
	flowsPer := map[int]int{}
	for i, f := range flows {
		per := f.perWorker()
		if len(per) != 1 {
			t.Errorf("flow %d was answered by workers %v, want one", i, per)
		}
		for id := range per {
			flowsPer[id]++
		}
	}
	t.Logf("flows per worker: %v", flowsPer)
	// The kernel hashes each flow: about 85 of 256 each, with a standard
	// deviation near 7.5. 15% is far in the tail.
	if len(flowsPer) != workers {
		t.Fatalf("flows reached workers %v, want all %d", flowsPer, workers)
	}
	for id, n := range flowsPer {
		if n*100 < nflows*15 {
			t.Errorf("worker %d got %d of %d flows, want at least 15%%", id, n, nflows)
		}
	}
}

// TestUDPSteeringSpreadsOneFlow: with Config.UDPSteering a single flow's
// datagrams reach every worker, each about a third of them.
func TestUDPSteeringSpreadsOneFlow(t *testing.T) {
	if caps := reuse.Probe(); !caps.CBPFSteering {
		t.Skipf("no cBPF steering here: %s", caps.Note)
	}
	const workers, total, batch = 3, 900, 30
	c := startCluster(t, sockshare.Config{Workers: workers, Policy: "reuseport", UDPSteering: true}, "udpecho")
	valid := map[int]bool{}
	for id := range udpListening(c) {
		valid[id] = true
	}
	f := newUDPFlow(t, c.addr, valid)
	for b := 0; b < total; b += batch {
		ps := make([]string, batch)
		for i := range ps {
			ps[i] = fmt.Sprintf("datagram %d", b+i)
		}
		f.exchange(ps...)
	}
	f.finish()
	f.check(t, "the flow")
	per := f.perWorker()
	answered := 0
	for _, n := range per {
		answered += n
	}
	t.Logf("answers per worker: %v", per)
	if len(per) != workers {
		t.Fatalf("one steered flow reached workers %v, want all %d", per, workers)
	}
	// Binomial: about 300 of 900 each, standard deviation near 14.
	for id, n := range per {
		if n*100 < answered*20 {
			t.Errorf("worker %d answered %d of %d datagrams, want at least 20%%", id, n, answered)
		}
	}
}

// TestUDPConnectionPolicyFallsBackOnce: rr and leastconn, asked for by
// the master or by a worker's ListenConfig, serve UDP as shared; the
// fallback is one EventFallback and one Warn line for the group, not one
// per worker.
func TestUDPConnectionPolicyFallsBackOnce(t *testing.T) {
	cases := []struct {
		name, master, worker string
	}{
		{"master rr", "rr", ""},
		{"master leastconn", "leastconn", ""},
		{"worker asks rr", "shared", "rr"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var log logSink
			cfg := sockshare.Config{
				Workers: 2, Policy: tc.master,
				Logger: slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelWarn})),
			}
			c := startCluster(t, cfg, "udpecho", udpPolicyEnv+"="+tc.worker)
			for id, e := range udpListening(c) {
				if e.Policy != policy.Shared {
					t.Errorf("worker %d listens under %q, want shared", id, e.Policy)
				}
			}
			// In order: the fallback comes before the listening event of
			// the worker whose Listen caused it, so it is already here.
			asked := tc.master
			if tc.worker != "" {
				asked = tc.worker
			}
			c.mu.Lock()
			var fb *sockshare.Event
			for i, e := range c.events {
				if e.Type == sockshare.EventFallback {
					fb = &c.events[i]
					break
				}
				if e.Type == sockshare.EventListening && fb == nil {
					t.Errorf("listening event %v came before the fallback", e)
				}
			}
			c.mu.Unlock()
			if fb == nil {
				t.Fatalf("no fallback event by the time every worker listened\n%s", c.eventLog())
			}
			if want := fmt.Sprintf(`policy %q does not apply to udp; using "shared"`, asked); fb.Err == nil || fb.Err.Error() != want {
				t.Errorf("fallback error %v; want %s (the policy asked for)", fb.Err, want)
			}
			udpFlows(t, c, 32, 2)
			c.stop()
			if n := udpCount(c, sockshare.EventFallback); n != 1 {
				t.Errorf("%d fallback events, want 1\n%s", n, c.eventLog())
			}
			c.mu.Lock()
			for _, e := range c.events {
				if e.Type == sockshare.EventFallback {
					if e.Policy != policy.Shared || e.Network != "udp" || e.Err == nil {
						t.Errorf("fallback event %v, want udp, policy shared and an error", e)
					}
					t.Logf("fallback: %v", e)
				}
			}
			c.mu.Unlock()
			if n := strings.Count(log.String(), "does not apply to datagram sockets"); n != 1 {
				t.Errorf("the fallback was logged %d times, want once:\n%s", n, log.String())
			}
		})
	}
}

// TestUDPNoFDLeak: a cluster serving UDP leaves the master's descriptor
// count where it was once it has stopped.
func TestUDPNoFDLeak(t *testing.T) {
	cases := []struct {
		name  string
		cfg   sockshare.Config
		steer bool
	}{
		{"shared", sockshare.Config{Workers: 2, Policy: "shared"}, false},
		{"reuseport", sockshare.Config{Workers: 2, Policy: "reuseport"}, false},
		{"reuseport steered", sockshare.Config{Workers: 2, Policy: "reuseport", UDPSteering: true}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.steer && !reuse.Probe().CBPFSteering {
				t.Skip("no cBPF steering here")
			}
			// Warm up what the runtime opens once (netpoller, probes).
			if pc, err := net.ListenPacket("udp", "127.0.0.1:0"); err == nil {
				pc.Close()
			}
			before := openFDs(t)
			c := startCluster(t, tc.cfg, "udpecho")
			udpFlows(t, c, 64, 4)
			c.stop()
			after := openFDs(t)
			if d := after - before; d > 2 || d < -2 {
				t.Errorf("open descriptors: %d before the cluster, %d after it stopped", before, after)
			}
		})
	}
}

// TestUDPReplacementInheritsSlotSocket: under reuseport the master keeps
// each slot's socket. A datagram sent while a slot's worker is dead waits
// in that socket and is answered, once, by the replacement, which also
// takes over every flow of the old worker.
func TestUDPReplacementInheritsSlotSocket(t *testing.T) {
	cfg := sockshare.Config{Workers: 2, Policy: "reuseport", RestartDelay: 500 * time.Millisecond}
	c := startCluster(t, cfg, "udpecho")
	first := udpListening(c)
	valid := map[int]bool{}
	for id := range first {
		valid[id] = true
	}
	// Enough flows that each worker has some (a miss is 2^-31).
	flows := make([]*udpFlow, 32)
	byWorker := map[int][]int{} // flow indexes
	for i := range flows {
		f := newUDPFlow(t, c.addr, valid)
		defer f.c.Close()
		f.exchange(fmt.Sprintf("flow %d before", i))
		f.check(t, fmt.Sprintf("flow %d", i))
		for id := range f.perWorker() {
			byWorker[id] = append(byWorker[id], i)
		}
		flows[i] = f
	}
	if len(byWorker) != 2 {
		t.Fatalf("32 flows reached workers %v, want both", byWorker)
	}
	var victim sockshare.Event
	for _, e := range first {
		if victim.WorkerID == 0 || e.WorkerID < victim.WorkerID {
			victim = e
		}
	}
	if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c.waitFor("the killed worker's exit", 10*time.Second, func(evs []sockshare.Event, _ []string) bool {
		for _, e := range evs {
			if e.Type == sockshare.EventExit && e.WorkerID == victim.WorkerID {
				return true
			}
		}
		return false
	})
	// The slot is empty now (the restart waits RestartDelay): send once,
	// without retry, on a flow the dead worker served.
	orphan := flows[byWorker[victim.WorkerID][0]]
	const queued = "sent while the slot was empty"
	orphan.sent[queued]++
	if _, err := orphan.c.Write([]byte(queued)); err != nil {
		t.Fatal(err)
	}
	sentAt := time.Now()
	var replacement sockshare.Event
	c.waitFor("a replacement in the slot", 30*time.Second, func(evs []sockshare.Event, _ []string) bool {
		for _, e := range evs {
			if e.Type == sockshare.EventListening && e.Slot == victim.Slot && e.WorkerID != victim.WorkerID {
				replacement = e
				return true
			}
		}
		return false
	})
	if !replacement.Time.After(sentAt) {
		t.Logf("the replacement listened before the datagram was sent: queueing in the slot socket not exercised")
	}
	valid[replacement.WorkerID] = true
	buf := make([]byte, 2048)
	orphan.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	n, err := orphan.c.Read(buf)
	if err != nil {
		t.Fatalf("no answer to the datagram sent while the slot was empty: %v", err)
	}
	if got, want := string(buf[:n]), fmt.Sprintf("%d %s", replacement.WorkerID, queued); got != want {
		t.Fatalf("answer %q, want %q", got, want)
	}
	orphan.record(string(buf[:n]))
	// Every flow stays in its slot: the old worker's flows now reach its
	// replacement, the other worker keeps its own.
	for id, idx := range byWorker {
		want := id
		if id == victim.WorkerID {
			want = replacement.WorkerID
		}
		for _, i := range idx {
			p := fmt.Sprintf("flow %d after", i)
			flows[i].exchange(p)
			if got := flows[i].answers[p]; len(got) == 0 || got[0] != want {
				t.Errorf("flow %d of worker %d was answered by %v after the restart, want %d", i, id, got, want)
			}
		}
	}
	var wg sync.WaitGroup
	for _, f := range flows {
		wg.Go(f.finish)
	}
	wg.Wait()
	for i, f := range flows {
		f.check(t, fmt.Sprintf("flow %d", i))
	}
}

// TestUDPMasterProcess is the master half of TestUDPWorkersDieWithMaster,
// run in a child process; in a normal run it is skipped. It starts a UDP
// cluster, prints "udpmaster <addr> <worker pid>...", and serves until it
// is killed or its standard input closes.
func TestUDPMasterProcess(t *testing.T) {
	pol := os.Getenv(udpMasterEnv)
	if pol == "" {
		t.Skip("helper process of TestUDPWorkersDieWithMaster")
	}
	c := startCluster(t, sockshare.Config{Workers: 2, Policy: pol}, "udpecho")
	line := []string{"udpmaster", c.addr}
	for _, e := range udpListening(c) {
		line = append(line, strconv.Itoa(e.PID))
	}
	fmt.Println(strings.Join(line, " "))
	bufio.NewReader(os.Stdin).ReadString('\n')
}

// TestUDPWorkersDieWithMaster: SIGKILL of the master takes every UDP
// worker down, blocked in a read as it is, and with them the socket: the
// address then refuses datagrams.
func TestUDPWorkersDieWithMaster(t *testing.T) {
	for _, pol := range []string{"shared", "reuseport"} {
		t.Run(pol, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestUDPMasterProcess$")
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, roleEnv+"=") && !strings.HasPrefix(kv, udpMasterEnv+"=") {
					cmd.Env = append(cmd.Env, kv)
				}
			}
			cmd.Env = append(cmd.Env, udpMasterEnv+"="+pol)
			cmd.Stderr = os.Stderr
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				stdin.Close()
				cmd.Process.Kill()
				cmd.Wait()
			})
			lines := make(chan string, 1)
			go func() {
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					if strings.HasPrefix(sc.Text(), "udpmaster ") {
						lines <- sc.Text()
						return
					}
				}
				close(lines)
			}()
			var line string
			select {
			case line = <-lines:
			case <-time.After(30 * time.Second):
				t.Fatal("the master process did not report its workers within 30s")
			}
			fields := strings.Fields(line)
			if len(fields) != 4 {
				t.Fatalf("the master process said %q", line)
			}
			t.Logf("master process: %s", line)
			addr := fields[1]
			var pidfds []int
			for _, s := range fields[2:] {
				pid, _ := strconv.Atoi(s)
				fd, err := unix.PidfdOpen(pid, 0)
				if err != nil {
					t.Skipf("pidfd_open(%d): %v", pid, err)
				}
				defer unix.Close(fd)
				pidfds = append(pidfds, fd)
			}

			f := newUDPFlow(t, addr, map[int]bool{1: true, 2: true})
			defer f.c.Close()
			f.exchange("before the master dies")
			f.check(t, "the flow")

			cmd.Process.Kill()
			cmd.Wait()
			for i, fd := range pidfds {
				// A pidfd polls readable once its process has exited.
				pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
				n, err := unix.Poll(pfd, 5000)
				for errors.Is(err, syscall.EINTR) {
					n, err = unix.Poll(pfd, 5000)
				}
				if err != nil {
					t.Fatalf("poll pidfd: %v", err)
				}
				if n == 0 {
					t.Errorf("worker pid %s still runs 5s after its master was killed", fields[2+i])
				}
			}
			// Nobody holds the socket any more: the kernel answers the next
			// datagram with ICMP port unreachable, which a connected UDP
			// socket reports as ECONNREFUSED.
			f.c.Write([]byte("after the master died"))
			f.c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := f.c.Read(make([]byte, 64)); !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("datagram to %s after every process died: %v, want ECONNREFUSED", addr, err)
			}
		})
	}
}
