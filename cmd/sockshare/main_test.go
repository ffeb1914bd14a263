//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/sockshare/sockshare"
)

// The test binary plays three parts besides running the tests, chosen by
// its environment:
//
//   - the runner's exec shim (sockshare.EnvExecShim, set by the runner):
//     it execs the worker command, as the real binary would;
//   - a Go worker built with the library (envRole, given by the worker
//     command through env(1), so only the worker has it);
//   - the runner itself (envAsRunner, set by startRunner): "sockshare run".
//
// The library starts its worker client in its package init, before
// TestMain, so a worker is already connected to the master when its role
// is read here; the role is read before the runner marker, which the
// worker inherits from the runner's environment.
const (
	envAsRunner = "SOCKSHARE_TEST_AS_RUNNER"
	envRole     = "SOCKSHARE_TEST_ROLE"
	envAddr     = "SOCKSHARE_TEST_ADDR"
	// envRunToken marks every process of one runner (the runner, its
	// shims, its workers inherit it): after the runner exits, a process
	// whose environment still holds the token was left behind.
	envRunToken = "SOCKSHARE_TEST_RUN"
)

// roles are the parts a worker command can ask of the test binary.
var roles = map[string]func() int{
	"go-http": goHTTPWorker,
}

func TestMain(m *testing.M) {
	if isShim() {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	if role := os.Getenv(envRole); role != "" {
		f, ok := roles[role]
		if !ok {
			fmt.Fprintf(os.Stderr, "unknown test role %q\n", role)
			os.Exit(3)
		}
		os.Exit(f())
	}
	if os.Getenv(envAsRunner) != "" {
		// Not for the workers: one that is this binary must never
		// become a runner of its own.
		os.Unsetenv(envAsRunner)
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// goHTTPWorker is a worker built with the library: it joins the runner's
// address with sockshare.Listen (the master dispatches its connections
// over IPC) and answers as testdata/worker.py does.
func goHTTPWorker() int {
	if !sockshare.IsWorker() {
		fmt.Fprintln(os.Stderr, "go-http worker: not started by a sockshare master")
		return 3
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ln, err := sockshare.Listen("tcp", os.Getenv(envAddr))
	if err != nil {
		fmt.Fprintln(os.Stderr, "go-http worker:", err)
		return 3
	}
	id := strconv.Itoa(sockshare.WorkerID())
	body := fmt.Sprintf("worker=%s slot=%d pid=%d listen_pid=%s\n",
		id, sockshare.Slot(), os.Getpid(), os.Getenv("LISTEN_PID"))
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("X-Worker", id)
			w.Header().Set("Connection", "close")
			io.WriteString(w, body)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	if err := sockshare.ServeHTTP(ctx, srv, ln, 10*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "go-http worker:", err)
		return 1
	}
	return 0
}
