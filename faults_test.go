//go:build linux

package sockshare_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sockshare/sockshare"
	"github.com/sockshare/sockshare/internal/kdispatch"
)

// variant is a policy under a dispatch mode.
type variant struct{ name, policy, dispatch string }

// variants returns pols under master dispatch (for rr and leastconn; as
// they are for the others), then rr and leastconn under kernel dispatch.
func variants(pols ...string) []variant {
	var vs []variant
	for _, p := range pols {
		vs = append(vs, variant{p, p, ""})
	}
	return append(vs, variant{"rr-kernel", "rr", sockshare.DispatchKernel},
		variant{"leastconn-kernel", "leastconn", sockshare.DispatchKernel})
}

// run runs f as a subtest, skipped with the reason where the kernel cannot
// dispatch (not root, no BPF).
func (v variant) run(t *testing.T, f func(t *testing.T)) {
	t.Run(v.name, func(t *testing.T) {
		if v.dispatch == sockshare.DispatchKernel {
			if err := kdispatch.Probe(); err != nil {
				t.Skipf("kernel dispatch unavailable here: %v", err)
			}
		}
		f(t)
	})
}

// Environment of the fault roles.
const (
	// faultModeEnv: "crash-after-listen" makes slot 0 exit 1 right after
	// its Listen is served, every time.
	faultModeEnv = "SOCKSHARE_TEST_FAULT_MODE"
	// faultNetEnv: "tcp" (default) or "udp".
	faultNetEnv = "SOCKSHARE_TEST_FAULT_NET"
)

func init() {
	roles["fault"] = faultWorker
	roles["emfile-listen"] = emfileListenWorker
	roles["marker-check"] = markerCheckRole
}

// faultWorker serves HTTP (tcp) or echoes datagrams (udp) on addrEnv. The
// master's message "close" makes it close its listener and answer
// "closed"; "relisten" makes it listen on the same address again and answer
// "relistened ok" or "relistened <error>".
func faultWorker() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	addr := os.Getenv(addrEnv)
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	udp := os.Getenv(faultNetEnv) == "udp"
	var mu sync.Mutex
	var closer func() error
	listening := make(chan struct{}) // closed after the first Listen
	serve := func() error {
		if udp {
			pc, err := sockshare.ListenPacket("udp", addr)
			if err != nil {
				return err
			}
			conn := pc.(*net.UDPConn)
			mu.Lock()
			closer = conn.Close
			mu.Unlock()
			go echoUDP(conn)
			return nil
		}
		ln, err := sockshare.Listen("tcp", addr)
		if err != nil {
			return err
		}
		mu.Lock()
		closer = ln.Close
		mu.Unlock()
		id := strconv.Itoa(sockshare.WorkerID())
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Worker", id)
			fmt.Fprintf(w, "hello from worker %s\n", id)
		})}
		go srv.Serve(ln)
		return nil
	}
	// The handler is set before the first Listen: the test talks to the
	// worker as soon as it listens.
	sockshare.HandleMessages(func(p []byte) {
		// Not on the IPC goroutine: Listen waits for the master's reply,
		// which that goroutine reads.
		go func() {
			<-listening
			switch string(p) {
			case "close":
				mu.Lock()
				err := closer()
				mu.Unlock()
				sockshare.Send([]byte(fmt.Sprintf("closed %v", err)))
			case "relisten":
				if err := serve(); err != nil {
					sockshare.Send([]byte("relistened " + err.Error()))
					return
				}
				sockshare.Send([]byte("relistened ok"))
			}
		}()
	})
	if err := serve(); err != nil {
		sockshare.Send([]byte("listen-error " + err.Error()))
		<-ctx.Done()
		return 2
	}
	close(listening)
	if os.Getenv(faultModeEnv) == "crash-after-listen" && sockshare.Slot() == 0 {
		return 1
	}
	<-ctx.Done()
	return 0
}

func echoUDP(conn *net.UDPConn) {
	prefix := strconv.Itoa(sockshare.WorkerID()) + " "
	buf := make([]byte, 2048)
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		conn.WriteToUDPAddrPort(append([]byte(prefix), buf[:n]...), from)
	}
}

// startFaultMaster runs a master whose slot 0 crashes right after
// listening, until the slot is given up; it returns the cluster and the
// address slot 1 serves.
func startGiveUpCluster(t *testing.T, pol, dispatch, network string, steer bool) (*cluster, string) {
	t.Helper()
	c := &cluster{t: t, done: make(chan error, 1), notify: make(chan struct{}, 1)}
	cfg := sockshare.Config{
		Workers: 2, Policy: pol, Dispatch: dispatch, Program: os.Args[0], Args: []string{},
		Env: append(os.Environ(), roleEnv+"=fault", faultModeEnv+"=crash-after-listen",
			faultNetEnv+"="+network),
		RestartDelay: 10 * time.Millisecond, MaxRestartDelay: time.Second, MaxCrashes: 3,
		UDPSteering: steer, ShutdownTimeout: 10 * time.Second,
		OnEvent: c.record,
	}
	m, err := sockshare.NewMaster(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.m = m
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	go func() { c.done <- m.Run(ctx) }()
	t.Cleanup(c.stop)
	addr := ""
	c.waitFor("slot 0 given up and slot 1 listening", 30*time.Second, func(evs []sockshare.Event, _ []string) bool {
		gaveUp := false
		for _, e := range evs {
			if e.Type == sockshare.EventGiveUp && e.Slot == 0 {
				gaveUp = true
			}
			if e.Type == sockshare.EventListening && e.Slot == 1 {
				addr = e.Addr
			}
		}
		return gaveUp && addr != ""
	})
	return c, addr
}

// TestGivenUpSlotServedByOthers: with slot 0 given up after crashing
// right after each Listen, every new connection is answered by slot 1,
// under every policy. Before slots left the reuseport group, slot 0's
// socket kept its share of connections unanswered forever.
func TestGivenUpSlotServedByOthers(t *testing.T) {
	for _, v := range variants("shared", "rr", "leastconn", "reuseport") {
		v.run(t, func(t *testing.T) {
			t.Parallel() // own cluster and address; counts no descriptor
			c, addr := startGiveUpCluster(t, v.policy, v.dispatch, "tcp", false)
			const n = 200
			per, errs := tally(load(addr, "/", n, 8))
			if len(errs) > 0 {
				t.Fatalf("%d of %d requests failed, first: %v", len(errs), n, errs[0])
			}
			w := workerInSlot(t, c, 1)
			if per[strconv.Itoa(w.ID)] != n {
				t.Errorf("per worker %v; want all %d from worker %d (slot 1)", per, n, w.ID)
			}
		})
	}
}

// TestGivenUpSlotServedByOthersUDP: the same for datagrams: ≥ 99% of 200
// flows answered by slot 1 (each datagram is retried a few times, as
// loopback drops under load).
func TestGivenUpSlotServedByOthersUDP(t *testing.T) {
	for _, tc := range []struct {
		name, pol string
		steer     bool
	}{{"shared", "shared", false}, {"reuseport", "reuseport", false}, {"reuseport-steered", "reuseport", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // own cluster and address; counts no descriptor
			c, addr := startGiveUpCluster(t, tc.pol, "", "udp", tc.steer)
			w := workerInSlot(t, c, 1)
			answered, total := udpAnswered(t, addr, 200, map[int]bool{w.ID: true})
			if answered*100 < total*99 {
				t.Fatalf("%d of %d flows answered; want at least 99%%", answered, total)
			}
			t.Logf("%d of %d flows answered", answered, total)
		})
	}
}

// udpAnswered sends one datagram on each of n new flows, retrying a few
// times, and counts the flows answered by one of the worker ids.
func udpAnswered(t *testing.T, addr string, n int, ids map[int]bool) (answered, total int) {
	t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			conn, err := net.Dial("udp", addr)
			if err != nil {
				return
			}
			defer conn.Close()
			payload := fmt.Sprintf("flow-%d", i)
			buf := make([]byte, 256)
			for try := 0; try < 5; try++ {
				conn.Write([]byte(payload))
				conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
				k, err := conn.Read(buf)
				if err != nil {
					continue
				}
				id, echo, _ := strings.Cut(string(buf[:k]), " ")
				if n, _ := strconv.Atoi(id); ids[n] && echo == payload {
					mu.Lock()
					answered++
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return answered, n
}

// freePort returns a 127.0.0.1 address with a port nothing listens on.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// tellAll sends msg to every worker and waits for each one's reply that
// starts with want.
func tellAll(t *testing.T, c *cluster, msg, want string) {
	t.Helper()
	ws := c.m.Workers()
	c.mu.Lock()
	seen := len(c.messages)
	c.mu.Unlock()
	for _, w := range ws {
		if err := c.m.Send(w.ID, []byte(msg)); err != nil {
			t.Fatalf("send %q to worker %d: %v", msg, w.ID, err)
		}
	}
	c.waitFor(fmt.Sprintf("every worker's %q", want), 20*time.Second, func(_ []sockshare.Event, msgs []string) bool {
		got := map[string]bool{}
		for _, m := range msgs[seen:] {
			id, rest, _ := strings.Cut(m, " ")
			if strings.HasPrefix(rest, want) {
				got[id] = true
			} else if strings.HasPrefix(rest, strings.Fields(want)[0]) {
				t.Fatalf("worker %s: %s", id, rest)
			}
		}
		return len(got) == len(ws)
	})
}

// TestGroupReleasedWhenNoWorkerListens: once every worker has closed its
// listener, new connections are refused within a second, and listening
// again on the same fixed address works, under every policy.
func TestGroupReleasedWhenNoWorkerListens(t *testing.T) {
	for _, v := range variants("shared", "rr", "leastconn", "reuseport") {
		v.run(t, func(t *testing.T) {
			addr := freePort(t)
			c := startCluster(t, sockshare.Config{Workers: 2, Policy: v.policy, Dispatch: v.dispatch}, "fault", addrEnv+"="+addr)
			if r := get(addr, "/"); r.err != nil || r.status != 200 {
				t.Fatalf("before closing: %+v", r)
			}
			tellAll(t, c, "close", "closed <nil>")
			deadline := time.Now().Add(time.Second)
			for {
				conn, err := net.DialTimeout("tcp", addr, time.Second)
				if errors.Is(err, syscall.ECONNREFUSED) {
					break
				}
				if conn != nil {
					conn.Close()
				}
				if time.Now().After(deadline) {
					t.Fatalf("1s after every worker closed its listener, a connection still got %v; want refused", err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if ls := c.m.Listeners(); len(ls) != 0 {
				t.Errorf("Listeners() after every worker closed: %+v; want none", ls)
			}
			tellAll(t, c, "relisten", "relistened ok")
			per, errs := tally(load(addr, "/", 40, 4))
			if len(errs) > 0 {
				t.Fatalf("after listening again: %d failed, first %v", len(errs), errs[0])
			}
			t.Logf("after listening again: per worker %v", per)
		})
	}
}

// TestPacketGroupReleasedWhenNoWorkerReads: the same for datagram sockets,
// whose Close a worker notices by polling: within a second a datagram is
// refused (ICMP port unreachable), and listening again works.
func TestPacketGroupReleasedWhenNoWorkerReads(t *testing.T) {
	for _, pol := range []string{"shared", "reuseport"} {
		t.Run(pol, func(t *testing.T) {
			conn, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := conn.LocalAddr().String()
			conn.Close()
			c := startCluster(t, sockshare.Config{Workers: 2, Policy: pol}, "fault", addrEnv+"="+addr, faultNetEnv+"=udp")
			tellAll(t, c, "close", "closed <nil>")
			client, err := net.Dial("udp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			deadline := time.Now().Add(time.Second + sockshare.PacketPollInterval)
			buf := make([]byte, 256)
			for {
				client.Write([]byte("ping"))
				client.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
				_, err := client.Read(buf)
				if errors.Is(err, syscall.ECONNREFUSED) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("after every worker closed its socket, a datagram still got %v; want refused", err)
				}
			}
			tellAll(t, c, "relisten", "relistened ok")
			ids := map[int]bool{}
			for _, w := range c.m.Workers() {
				ids[w.ID] = true
			}
			if ok, n := udpAnswered(t, addr, 100, ids); ok*100 < n*99 {
				t.Fatalf("after listening again, %d of %d flows answered", ok, n)
			}
		})
	}
}

// TestDisconnectKillsAfterCallerGivesUp: a disconnected worker that
// ignores SIGTERM is killed at ShutdownTimeout even when the caller of
// Disconnect stopped waiting long before.
func TestDisconnectKillsAfterCallerGivesUp(t *testing.T) {
	c := startCluster(t, sockshare.Config{Workers: 1, Policy: "shared", ShutdownTimeout: 500 * time.Millisecond}, "ignore-term")
	w := c.m.Workers()[0]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := c.m.Disconnect(ctx, w.ID); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Disconnect with a 20ms context: %v; want context.DeadlineExceeded", err)
	}
	exit := exitOf(c, w.ID, 10*time.Second)
	if exit.Signal != syscall.SIGKILL || !exit.Asked {
		t.Fatalf("exit %v; want killed at the deadline, asked for", exit)
	}
}

// emfileListenWorker fills its descriptor table, then listens: the Listen
// must fail with EMFILE and the worker live on. With the limit restored it
// listens again and serves.
func emfileListenWorker() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		sockshare.Send([]byte("emfile-error " + err.Error()))
		return 2
	}
	if _, _, err := exhaustFDs(); err != nil {
		sockshare.Send([]byte("emfile-error " + err.Error()))
		return 2
	}
	addr := os.Getenv(addrEnv)
	_, err := sockshare.Listen("tcp", addr)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		sockshare.Send([]byte("emfile-error " + err.Error()))
		return 2
	}
	sockshare.Send([]byte(fmt.Sprintf("emfile-listen emfile=%v err=%v", errors.Is(err, syscall.EMFILE), err)))
	ln, err := sockshare.Listen("tcp", addr)
	if err != nil {
		sockshare.Send([]byte("emfile-error second listen: " + err.Error()))
		return 2
	}
	sockshare.Send([]byte("listening-again"))
	return serveHTTP(ctx, ln)
}

// TestListenAtFDLimit: under shared and reuseport a worker that cannot
// install the socket the master sends gets EMFILE from Listen and keeps
// running; it used to take the truncated reply for a lost master and
// terminate itself.
func TestListenAtFDLimit(t *testing.T) {
	for _, pol := range []string{"shared", "reuseport"} {
		t.Run(pol, func(t *testing.T) {
			addr := freePort(t)
			c := startCluster(t, sockshare.Config{Workers: 1, Policy: pol}, "emfile-listen", addrEnv+"="+addr)
			note := message(c, "emfile", 20*time.Second)
			if !strings.Contains(note, "emfile=true") {
				t.Fatalf("worker: %s; want a Listen error wrapping EMFILE", note)
			}
			t.Logf("worker: %s", note)
			message(c, "listening-again", 20*time.Second)
			if r := get(addr, "/"); r.err != nil || r.status != 200 {
				t.Fatalf("after the failed Listen: %+v", r)
			}
			c.mu.Lock()
			defer c.mu.Unlock()
			for _, e := range c.events {
				if e.Type == sockshare.EventExit {
					t.Fatalf("a worker exited: %v", e)
				}
			}
		})
	}
}

// markerCheckRole runs with malformed worker markers: NewMaster and Listen
// must refuse, naming the cause, instead of starting a nested master or
// binding on their own.
func markerCheckRole() int {
	_, errM := sockshare.NewMaster(sockshare.Config{Workers: 1})
	_, errL := sockshare.Listen("tcp", "127.0.0.1:0")
	fmt.Printf("worker=%v\nmaster: %v (is=%v)\nlisten: %v (is=%v)\n", sockshare.IsWorker(),
		errM, errors.Is(errM, sockshare.ErrWorkerEnv), errL, errors.Is(errL, sockshare.ErrWorkerEnv))
	return 0
}

// TestMalformedWorkerMarkers: a process started with malformed
// SOCKSHARE_WORKER_* variables gets ErrWorkerEnv, naming the variable,
// from NewMaster and Listen.
func TestMalformedWorkerMarkers(t *testing.T) {
	for _, tc := range []struct {
		name, env, want string
	}{
		{"bad id", "SOCKSHARE_WORKER_ID=x SOCKSHARE_WORKER_SLOT=0 SOCKSHARE_WORKER_IPC_FD=3 SOCKSHARE_WORKER_MASTER_PID=1", "SOCKSHARE_WORKER_ID"},
		{"bad slot", "SOCKSHARE_WORKER_ID=1 SOCKSHARE_WORKER_SLOT=-1 SOCKSHARE_WORKER_IPC_FD=3 SOCKSHARE_WORKER_MASTER_PID=1", "SOCKSHARE_WORKER_SLOT"},
		{"no socket", "SOCKSHARE_WORKER_ID=1 SOCKSHARE_WORKER_SLOT=0 SOCKSHARE_WORKER_IPC_FD=0 SOCKSHARE_WORKER_MASTER_PID=1", "IPC descriptor 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0])
			cmd.Env = append(os.Environ(), roleEnv+"=marker-check")
			cmd.Env = append(cmd.Env, strings.Fields(tc.env)...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			s := string(out)
			if !strings.Contains(s, "worker=false") || strings.Count(s, "(is=true)") != 2 || strings.Count(s, tc.want) != 2 {
				t.Fatalf("output:\n%s\nwant NewMaster and Listen both to fail with ErrWorkerEnv naming %s", s, tc.want)
			}
		})
	}
}
