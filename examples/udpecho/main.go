// Command udpecho is a UDP echo server whose workers share one address
// under a sockshare policy.
//
//	go run ./examples/udpecho [-workers N] [-policy shared|reuseport] [-steer] [-addr host:port]
//
// Every reply is the answering worker's id in decimal, one space, then the
// datagram exactly as received. Once every worker listens, the master prints
// one line: "listening on <addr> policy=<p> workers=<n>", where <p> is the
// policy actually used. A datagram socket has no accept, so a connection
// policy (rr, leastconn, and rr is the default) falls back to shared; the
// master logs that once on stderr.
//
// Under reuseport each worker reads its own socket and the kernel sends
// every datagram of one flow (source address and port) to the same worker.
// -steer (Linux, reuseport only) attaches a cBPF program that spreads the
// datagrams at random over the workers, one flow included, at the cost of
// that affinity.
//
// SIGTERM or SIGINT shut down (exit 0); SIGHUP replaces every worker and,
// once every old worker has exited, prints "reload: done" on stdout. Bad
// flags, a bad address, -steer where it cannot work, or a port in use print
// one line on stderr and exit 2.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/sockshare/sockshare"
	"github.com/sockshare/sockshare/policy"
	"github.com/sockshare/sockshare/reuse"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

type options struct {
	workers int
	policy  string
	steer   bool
	addr    string
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("udpecho", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var o options
	fs.IntVar(&o.workers, "workers", runtime.NumCPU(), "number of worker processes")
	fs.StringVar(&o.policy, "policy", "", "sharing policy: shared or reuseport; rr and leastconn fall back to shared (default $SOCKSHARE_POLICY, else rr)")
	fs.BoolVar(&o.steer, "steer", false, "spread every flow's datagrams over the workers with cBPF (Linux, -policy reuseport)")
	fs.StringVar(&o.addr, "addr", "127.0.0.1:9000", "address to listen on")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stderr)
			fs.PrintDefaults()
			return 0
		}
		fmt.Fprintf(stderr, "udpecho: %v\n", err)
		return 2
	}
	if sockshare.IsWorker() {
		return worker(o, stderr)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "udpecho: unexpected arguments %q\n", fs.Args())
		return 2
	}
	return master(o, stdout, stderr)
}

func master(o options, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "udpecho: %v\n", err)
		return 2
	}
	if o.workers < 1 || o.workers > sockshare.MaxWorkers {
		return fail(fmt.Errorf("-workers must be between 1 and %d, got %d", sockshare.MaxWorkers, o.workers))
	}
	pol, err := policy.Resolve(o.policy)
	if err != nil {
		return fail(err)
	}
	if _, err := net.ResolveUDPAddr("udp", o.addr); err != nil {
		return fail(fmt.Errorf("bad -addr %q: %w", o.addr, err))
	}
	if o.steer {
		if pol != policy.ReusePort {
			return fail(fmt.Errorf("-steer needs -policy reuseport, not %q", pol))
		}
		if caps := reuse.Probe(); !caps.CBPFSteering {
			return fail(fmt.Errorf("-steer: %w: %s", reuse.ErrUnsupported, caps.Note))
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	m, err := sockshare.NewMaster(sockshare.Config{
		Workers:     o.workers,
		Policy:      string(pol),
		UDPSteering: o.steer,
		Logger:      slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return fail(err)
	}
	go reloadOnHUP(ctx, m, stdout, stderr)
	ran := make(chan error, 1)
	go func() { ran <- m.Run(ctx) }()

	// One line once every worker listens, naming the policy actually used
	// (rr falls back to shared on UDP); a listen error stops everything
	// with status 2.
	var lerr *sockshare.ListenError
	switch err := m.WaitReady(ctx); {
	case errors.As(err, &lerr):
		cancel()
		<-ran
		return fail(lerr)
	case err == nil:
		li := m.Listeners()[0]
		fmt.Fprintf(stdout, "listening on %s policy=%s workers=%d\n", li.Addr, li.Policy, o.workers)
	}
	if err := <-ran; err != nil {
		fmt.Fprintf(stderr, "udpecho: %v\n", err)
		return 1
	}
	return 0
}

// reloadOnHUP replaces every worker on each SIGHUP until ctx ends.
func reloadOnHUP(ctx context.Context, m *sockshare.Master, stdout, stderr io.Writer) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			err := m.Reload(ctx)
			switch {
			case err == nil:
				fmt.Fprintln(stdout, "reload: done")
			case ctx.Err() == nil:
				fmt.Fprintf(stderr, "udpecho: reload: %v\n", err)
			}
		case <-ctx.Done():
			return
		}
	}
}

func worker(o options, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	pc, err := sockshare.ListenPacket("udp", o.addr)
	if err != nil {
		// The master reports listen errors (once, not once per worker)
		// and shuts down; wait for it to tell us to go.
		select {
		case <-ctx.Done():
		case <-time.After(30 * time.Second):
		}
		return 2
	}
	conn := pc.(*net.UDPConn)
	defer conn.Close()
	// A read deadline in the past ends a read blocked in the loop, and
	// only that: the reply to the last datagram read still goes out
	// (closing the socket here could lose it). Datagrams not yet read stay
	// queued on the socket the master keeps, for the other workers or for
	// this slot's replacement.
	go func() {
		<-ctx.Done()
		conn.SetReadDeadline(time.Now())
	}()
	if err := echo(conn, sockshare.WorkerID()); err != nil && ctx.Err() == nil {
		fmt.Fprintf(stderr, "udpecho: worker %d: %v\n", sockshare.WorkerID(), err)
		return 1
	}
	return 0
}

// echo answers every datagram with "<id> <payload>" until a read fails.
func echo(conn *net.UDPConn, id int) error {
	buf := make([]byte, 64<<10)
	prefix := strconv.AppendInt(nil, int64(id), 10)
	prefix = append(prefix, ' ')
	reply := make([]byte, 0, len(prefix)+len(buf))
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return err
		}
		reply = append(append(reply[:0], prefix...), buf[:n]...)
		// A reply that cannot be sent (too large with the prefix, or the
		// client's buffer is full) is lost like any datagram.
		conn.WriteToUDPAddrPort(reply, from)
	}
}
