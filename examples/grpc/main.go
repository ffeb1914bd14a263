// Command grpc is a gRPC server whose workers share one address under a
// sockshare policy, and whose rolling reload (SIGHUP) fails no call.
//
//	go run ./examples/grpc [-workers N] [-policy P] [-addr host:port]
//
// It serves the standard gRPC health service (grpc.health.v1.Health, so
// grpcurl or grpc_health_probe can call it without a .proto), and every
// answer carries the header x-worker: <worker id>. Once every worker
// listens, the master prints "listening on <addr> policy=<p> workers=<n>";
// after each SIGHUP, "reload: worker 1 → 3, 2 → 4". SIGTERM or SIGINT shut
// down gracefully.
//
// Why no call fails: a worker told to stop calls GracefulStop, which
// closes the listener (under rr and leastconn what was queued for it goes
// to another worker), sends GOAWAY on every connection and waits for the
// calls in flight. A gRPC client never sends a call on a connection after
// the GOAWAY, and retries transparently the ones the server refused
// unprocessed; it reconnects, and sockshare gives the new connection to a
// live worker.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/sockshare/sockshare"
)

// stopTimeout bounds GracefulStop: a call still running then is cut.
const stopTimeout = 8 * time.Second

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

type options struct {
	workers int
	policy  string
	addr    string
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("grpc", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.IntVar(&o.workers, "workers", 2, "number of worker processes")
	fs.StringVar(&o.policy, "policy", "", "sharing policy: shared, rr, leastconn, reuseport (default $SOCKSHARE_POLICY, else rr)")
	fs.StringVar(&o.addr, "addr", "127.0.0.1:9090", "address to listen on")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if sockshare.IsWorker() {
		if err := worker(ctx, o.addr); err != nil {
			fmt.Fprintf(stderr, "grpc: worker: %v\n", err)
			return 1
		}
		return 0
	}
	m, err := sockshare.NewMaster(config(o, stderr))
	if err != nil {
		fmt.Fprintf(stderr, "grpc: %v\n", err)
		return 2
	}
	go func() {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		for {
			select {
			case <-hup:
				if err := reload(ctx, m, stdout); err != nil && ctx.Err() == nil {
					fmt.Fprintf(stderr, "grpc: reload: %v\n", err)
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	ran := make(chan error, 1)
	go func() { ran <- m.Run(ctx) }()
	if err := m.WaitReady(ctx); err == nil {
		li := m.Listeners()[0]
		fmt.Fprintf(stdout, "listening on %s policy=%s workers=%d\n", li.Addr, li.Policy, o.workers)
	} else if ctx.Err() == nil {
		fmt.Fprintf(stderr, "grpc: %v\n", err)
		stop()
		<-ran
		return 2
	}
	if err := <-ran; err != nil {
		fmt.Fprintf(stderr, "grpc: %v\n", err)
		return 1
	}
	return 0
}

func config(o options, stderr io.Writer) sockshare.Config {
	return sockshare.Config{
		Workers: o.workers,
		Policy:  o.policy,
		Logger:  slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
}

// reload replaces every worker and prints which replaced which.
func reload(ctx context.Context, m *sockshare.Master, stdout io.Writer) error {
	before := m.Workers()
	if err := m.Reload(ctx); err != nil {
		return err
	}
	fmt.Fprintln(stdout, reloadLine(before, m.Workers()))
	return nil
}

// reloadLine says, slot by slot, which worker replaced which:
// "reload: worker 1 → 3, 2 → 4".
func reloadLine(before, after []sockshare.WorkerInfo) string {
	// Slot → id of the workers that are not leaving: a snapshot may still
	// list an old worker that is draining or has exited.
	live := func(ws []sockshare.WorkerInfo) map[int]int {
		m := map[int]int{}
		for _, w := range ws {
			if w.State < sockshare.StateDisconnecting {
				m[w.Slot] = w.ID
			}
		}
		return m
	}
	was, now := live(before), live(after)
	var pairs []string
	for _, slot := range slices.Sorted(maps.Keys(now)) {
		if old, ok := was[slot]; ok && old != now[slot] {
			pairs = append(pairs, fmt.Sprintf("%d → %d", old, now[slot]))
		}
	}
	return "reload: worker " + strings.Join(pairs, ", ")
}

// worker serves the health service on the shared address until ctx ends,
// then stops gracefully.
func worker(ctx context.Context, addr string) error {
	ln, err := sockshare.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s := grpc.NewServer()
	grpc_health_v1.RegisterHealthServer(s, health{id: strconv.Itoa(sockshare.WorkerID())})
	stopped := make(chan struct{})
	go func() {
		<-ctx.Done()
		// GracefulStop closes ln, sends GOAWAY, waits for the calls in
		// flight; Stop cuts whatever is left after stopTimeout.
		t := time.AfterFunc(stopTimeout, s.Stop)
		s.GracefulStop()
		t.Stop()
		close(stopped)
	}()
	err = s.Serve(ln) // returns at once when GracefulStop begins
	if errors.Is(err, grpc.ErrServerStopped) || err == nil {
		<-stopped
		return nil
	}
	return err
}

// health answers every check SERVING, naming the worker in a header.
type health struct {
	grpc_health_v1.UnimplementedHealthServer
	id string
}

func (h health) Check(ctx context.Context, _ *grpc_health_v1.HealthCheckRequest) (*grpc_health_v1.HealthCheckResponse, error) {
	grpc.SetHeader(ctx, metadata.Pairs("x-worker", h.id))
	return &grpc_health_v1.HealthCheckResponse{Status: grpc_health_v1.HealthCheckResponse_SERVING}, nil
}
