//go:build linux

package udp_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockshare/sockshare/internal/sockfd"
	"github.com/sockshare/sockshare/reuse"
	"github.com/sockshare/sockshare/udp"
)

// The benchmarks measure how many datagrams per second reader processes
// receive under each strategy, with the groups built by the code the
// master uses:
//
//   - OneReader: one socket, one reader;
//   - Shared2Readers: one socket, two readers (shared with two workers);
//   - ReusePort2: two SO_REUSEPORT sockets, one reader each, 64 flows;
//   - Steered2OneFlow: the same with cBPF steering, and a single flow.
//
// Each reader is a separate process (this test binary again, with
// GOMAXPROCS=1, as a worker of a two-worker master on two cores gets) that
// reads its descriptor, inherited as fd 3, like a worker. Senders are
// goroutines of the benchmark process, so on one machine they share the
// cores with the readers, and the kernel's receive path (socket lookup,
// reuseport selection, queueing) runs in their system calls. A window
// bounds the datagrams in flight below what one socket buffers, so that
// the senders do not spend the cores on datagrams the kernel then drops:
// a reader reports every benchBatch datagrams on a pipe, which returns
// that many sends to the senders.
//
//	go test -run '^$' -bench . -benchtime 2s -count 3 ./udp/

const (
	benchSenders = 2  // sending goroutines
	benchFlows   = 64 // client sockets, each its own 4-tuple
	benchPayload = 32 // bytes per datagram
	benchBatch   = 16 // datagrams per report from a reader
	benchWindow  = 128
	benchLimit   = 60 * time.Second

	readerEnv = "SOCKSHARE_UDP_BENCH_READER"
)

func TestMain(m *testing.M) {
	if os.Getenv(readerEnv) != "" {
		os.Exit(benchReader())
	}
	os.Exit(m.Run())
}

// benchReader is a reader process: it reads datagrams from fd 3 and writes
// one byte on stdout when it is ready, then one per benchBatch datagrams.
// It runs until it is killed.
func benchReader() int {
	c, err := udp.FilePacketConn(3)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	tick := []byte{1}
	if _, err := os.Stdout.Write(tick); err != nil {
		return 1
	}
	buf := make([]byte, 2048)
	for n := 1; ; n++ {
		if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if n%benchBatch == 0 {
			if _, err := os.Stdout.Write(tick); err != nil {
				return 1
			}
		}
	}
}

// slotter is the master side of both strategies.
type slotter interface {
	FD(slot int) (int, error)
	Close() error
}

// reader is one reader process and what it reported.
type reader struct {
	cmd      *exec.Cmd
	out      io.ReadCloser
	received atomic.Int64
}

// startReaders starts one reader process per slot in slots, each with a
// duplicate of that slot's descriptor, and waits until each is ready.
func startReaders(b *testing.B, g slotter, slots ...int) []*reader {
	b.Helper()
	var rs []*reader
	for _, slot := range slots {
		fd, err := g.FD(slot)
		if err != nil {
			b.Fatal(err)
		}
		dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			b.Fatal(err)
		}
		f := os.NewFile(uintptr(dup), "bench-socket")
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), readerEnv+"=1", "GOMAXPROCS=1")
		cmd.ExtraFiles = []*os.File{f}
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		err = cmd.Start()
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
		r := &reader{cmd: cmd, out: out}
		b.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
		})
		if _, err := io.ReadFull(out, make([]byte, 1)); err != nil {
			b.Fatalf("reader process: %v", err)
		}
		rs = append(rs, r)
	}
	return rs
}

// sharedSlots gives every slot the one held socket.
type sharedSlots struct{ *sockfd.Held }

func (s sharedSlots) FD(int) (int, error) { return s.Held.FD() }

func shared(b *testing.B, readers int) (*net.UDPAddr, []*reader) {
	h, err := sockfd.ListenPacket(context.Background(), "udp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close() // the readers hold their duplicates
	return h.Addr().(*net.UDPAddr), startReaders(b, sharedSlots{h}, make([]int, readers)...)
}

func reusePort(b *testing.B, slots int, steer bool) (*net.UDPAddr, []*reader) {
	if steer && !reuse.Probe().CBPFSteering {
		b.Skip("no cBPF steering here")
	}
	g, err := udp.NewReusePortGroup(context.Background(), "udp4", "127.0.0.1:0", slots, steer)
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	idx := make([]int, slots)
	for i := range idx {
		idx[i] = i
	}
	return g.Addr().(*net.UDPAddr), startReaders(b, g, idx...)
}

// run sends from flows client sockets until the readers have received b.N
// datagrams, and reports datagrams received per second, the share of sent
// datagrams lost, and the smallest reader's share.
func run(b *testing.B, addr *net.UDPAddr, readers []*reader, flows int) {
	clients := dialFlows(b, addr, flows)
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()

	var received, sent atomic.Int64
	tokens := make(chan struct{}, benchWindow)
	for range benchWindow {
		tokens <- struct{}{}
	}
	done := make(chan struct{})
	stop := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for _, r := range readers {
		// Not in wg: the read ends when the process is killed.
		go func() {
			buf := make([]byte, 64)
			for {
				n, err := r.out.Read(buf)
				if err != nil {
					return
				}
				r.received.Add(int64(n * benchBatch))
				if received.Add(int64(n*benchBatch)) >= int64(b.N) {
					once.Do(func() { close(done) })
				}
				for range n * benchBatch {
					select {
					case tokens <- struct{}{}:
					default:
					}
				}
			}
		}()
	}
	payload := make([]byte, benchPayload)
	b.ResetTimer()
	start := time.Now()
	selfStart := cpuTime(unix.RUSAGE_SELF)
	for k := range benchSenders {
		wg.Go(func() {
			for i := k; ; i += benchSenders {
				select {
				case <-stop:
					return
				case <-tokens:
				}
				if _, err := clients[i%len(clients)].Write(payload); err == nil {
					sent.Add(1)
				}
			}
		})
	}
	// A lost datagram never returns its send: when nothing arrives for a
	// while, refill the window.
	wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		last := int64(-1)
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			n := received.Load()
			if n == last {
				for range benchWindow {
					select {
					case tokens <- struct{}{}:
					default:
					}
				}
			}
			last = n
		}
	})
	select {
	case <-done:
	case <-time.After(benchLimit):
		b.Logf("received %d of %d datagrams in %v", received.Load(), b.N, benchLimit)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	close(stop)
	wg.Wait()
	senderCPU := cpuTime(unix.RUSAGE_SELF) - selfStart
	var readerCPU time.Duration
	for _, r := range readers {
		r.cmd.Process.Kill()
		r.cmd.Wait()
		// Includes the process's start, a millisecond or so.
		readerCPU += r.cmd.ProcessState.UserTime() + r.cmd.ProcessState.SystemTime()
	}

	got := received.Load()
	b.ReportMetric(float64(got)/elapsed.Seconds(), "dgrams/s")
	if n := sent.Load(); n > 0 {
		// Up to benchBatch-1 datagrams per reader are received but not
		// yet reported: a small overestimate of the loss.
		b.ReportMetric(100*float64(max(n-got, 0))/float64(n), "lost%")
	}
	if got > 0 {
		// Where the two cores went, per datagram received: the sending
		// process (senders, the kernel's delivery in their system calls,
		// the window's bookkeeping) and the readers.
		b.ReportMetric(float64(senderCPU.Nanoseconds())/float64(got), "send-ns/dgram")
		b.ReportMetric(float64(readerCPU.Nanoseconds())/float64(got), "read-ns/dgram")
	}
	if len(readers) > 1 && got > 0 {
		least := got
		for _, r := range readers {
			least = min(least, r.received.Load())
		}
		b.ReportMetric(100*float64(least)/float64(got), "minshare%")
	}
}

// dialFlows opens n connected client sockets. For a single flow, every
// sender gets its own duplicate of the one socket: one 4-tuple, and no
// write lock shared between the senders.
func dialFlows(b *testing.B, addr *net.UDPAddr, n int) []*net.UDPConn {
	b.Helper()
	first, err := net.DialUDP("udp4", nil, addr)
	if err != nil {
		b.Fatal(err)
	}
	clients := []*net.UDPConn{first}
	for len(clients) < n {
		c, err := net.DialUDP("udp4", nil, addr)
		if err != nil {
			b.Fatal(err)
		}
		clients = append(clients, c)
	}
	for len(clients) < benchSenders {
		f, err := first.File()
		if err != nil {
			b.Fatal(err)
		}
		pc, err := net.FilePacketConn(f)
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
		clients = append(clients, pc.(*net.UDPConn))
	}
	return clients
}

// BenchmarkOneReader: one socket, one reader.
func BenchmarkOneReader(b *testing.B) {
	addr, rs := shared(b, 1)
	run(b, addr, rs, benchFlows)
}

// BenchmarkShared2Readers: one socket, two readers, as shared serves two
// workers.
func BenchmarkShared2Readers(b *testing.B) {
	addr, rs := shared(b, 2)
	run(b, addr, rs, benchFlows)
}

// BenchmarkReusePort2: two SO_REUSEPORT sockets, one reader each, many
// flows hashed over them.
func BenchmarkReusePort2(b *testing.B) {
	addr, rs := reusePort(b, 2, false)
	run(b, addr, rs, benchFlows)
}

// BenchmarkSteered2OneFlow: two SO_REUSEPORT sockets with cBPF steering,
// one reader each, one flow spread over both.
func BenchmarkSteered2OneFlow(b *testing.B) {
	addr, rs := reusePort(b, 2, true)
	run(b, addr, rs, 1)
}

// cpuTime is the user and system time of this process (RUSAGE_SELF).
func cpuTime(who int) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(who, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
