package main

// Baselines without sockshare, for "what isolation costs":
//
//   - single: the same handler in one standalone process, GOMAXPROCS =
//     NumCPU (Go's default), on its own net.Listen socket: what one Go
//     process serves on this machine;
//   - plain: -workers standalone processes, each binding its own
//     SO_REUSEPORT socket on the same port (the reuse package's
//     ListenConfig, as the library's reuseport slots), with no master, the
//     workers' GOMAXPROCS as -gomaxprocs decides: the process model alone.
//
// Both run this binary with COMPARE_STANDALONE set; each process prints
// "<addr> <gomaxprocs>" on stdout once it listens, and names itself in
// X-Worker with its index from 1.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sockshare/sockshare/policy"
	"github.com/sockshare/sockshare/reuse"
)

// The pseudo-policies: names -policies accepts beside the real ones.
const (
	polSingle policy.Name = "single"
	polPlain  policy.Name = "plain"
)

func isPseudo(p policy.Name) bool { return p == polSingle || p == polPlain }

const envStandalone = "COMPARE_STANDALONE"

type standaloneSpec struct {
	ID        int    `json:"id"`
	Addr      string `json:"addr"`
	ReusePort bool   `json:"reuseport"`
	Pin       int    `json:"pin"` // CPU to pin to, -1 none
}

// standaloneMain is one baseline server process.
func standaloneMain(spec string) int {
	var s standaloneSpec
	if err := json.Unmarshal([]byte(spec), &s); err != nil {
		fmt.Fprintf(os.Stderr, "compare: standalone: bad %s: %v\n", envStandalone, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if s.Pin >= 0 {
		if err := pinSelf(s.Pin); err != nil {
			fmt.Fprintf(os.Stderr, "compare: standalone %d: pin: %v\n", s.ID, err)
			return 2
		}
	}
	var ln net.Listener
	var err error
	if s.ReusePort {
		ln, err = reuse.Listen("tcp", s.Addr)
	} else {
		ln, err = net.Listen("tcp", s.Addr) // what sockshare.Listen is outside a master
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "compare: standalone %d: %v\n", s.ID, err)
		return 1
	}
	fmt.Printf("%s %d\n", ln.Addr(), runtime.GOMAXPROCS(0))
	return serveHTTP(ctx, ln, s.ID)
}

// standaloneEnv is the environment of a baseline process: ours without
// COMPARE_* and GOMAXPROCS, plus GOMAXPROCS=procs when procs > 0.
func standaloneEnv(procs int) []string {
	env := workerEnv("short")
	if procs > 0 {
		env = append(env, "GOMAXPROCS="+strconv.Itoa(procs))
	}
	return env
}

// standaloneProcs is the GOMAXPROCS a baseline process gets: single
// always Go's default (0: unset); plain as the library would set it for
// its workers under the -gomaxprocs setting gmp.
func standaloneProcs(pol policy.Name, gmp, n int) int {
	if pol == polSingle {
		return 0
	}
	switch {
	case gmp == 0:
		return max(1, runtime.NumCPU()/n)
	case gmp < 0:
		return 0
	}
	return gmp
}

// runStandalone starts the baseline processes, drives the load like
// runOne and stops them.
func runStandalone(ctx context.Context, o *options, v variant, workload string, rep int) (*runResult, error) {
	if isUDP(workload) {
		return nil, fmt.Errorf("%s serves HTTP only, not %s", v.Policy, workload)
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	n := 1
	if v.Policy == polPlain {
		n = o.workers
	}
	res := &runResult{Policy: v.Policy, Effective: v.Policy, Dispatch: v.Dispatch, Workload: workload, GMP: v.GMP, Pin: v.Pin, Rep: rep}
	procs := standaloneProcs(v.Policy, v.GMP, n)
	var cmds []*exec.Cmd
	stopAll := func() {
		for _, c := range cmds {
			_ = c.Process.Signal(syscall.SIGTERM)
		}
		for _, c := range cmds {
			done := make(chan struct{})
			go func() { _ = c.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = c.Process.Kill()
				<-done
			}
		}
	}
	defer func() { stopAll(); cmds = nil }()

	addr := "127.0.0.1:0"
	seen := map[int]bool{}
	for i := range n {
		pin := -1
		if v.Pin {
			pin = i % runtime.NumCPU()
		}
		spec, _ := json.Marshal(standaloneSpec{ID: i + 1, Addr: addr, ReusePort: v.Policy == polPlain, Pin: pin})
		cmd := exec.Command(exe)
		cmd.Env = append(standaloneEnv(procs), envStandalone+"="+string(spec))
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		cmds = append(cmds, cmd)
		line := make(chan string, 1)
		go func() {
			s, _ := bufio.NewReader(out).ReadString('\n')
			line <- s
		}()
		var got string
		select {
		case got = <-line:
		case <-time.After(20 * time.Second):
			return nil, fmt.Errorf("%s: process %d not listening after 20s", v.Policy, i+1)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		a, p, ok := strings.Cut(strings.TrimSpace(got), " ")
		gmp, err := strconv.Atoi(p)
		if !ok || err != nil {
			return nil, fmt.Errorf("%s: process %d: %q instead of its address", v.Policy, i+1, got)
		}
		if i == 0 {
			addr = a
		}
		if !seen[gmp] {
			seen[gmp] = true
			res.MaxProcs = append(res.MaxProcs, gmp)
		}
		res.Workers = append(res.Workers, workerRun{ID: i + 1, Slot: i, PID: cmd.Process.Pid})
	}
	res.Addr = addr

	before := make([]time.Duration, n)
	schedBefore := make([]schedSample, n)
	for i, w := range res.Workers {
		before[i], _ = procCPU(w.PID)
		schedBefore[i] = procSched(w.PID)
	}
	meas := startMeasure()
	load, clientCPU, loadErr := driveLoad(ctx, o, exe, addr, workload, rep)
	meas.stop(res)
	for i := range res.Workers {
		w := &res.Workers[i]
		if a, err := procCPU(w.PID); err == nil {
			w.CPU = a - before[i]
		}
		res.ServerSched = res.ServerSched.add(procSched(w.PID).sub(schedBefore[i]))
	}
	if loadErr != nil {
		return nil, fmt.Errorf("%s %s: load generator: %w", v.Policy, workload, loadErr)
	}
	res.Load, res.ClientCPU = *load, clientCPU
	for key, c := range res.Load.PerWorker {
		id, err := strconv.Atoi(key)
		if err != nil || id < 1 || id > n {
			res.Unknown += c.Requests
			continue
		}
		res.Workers[id-1].Requests, res.Workers[id-1].Connections = c.Requests, c.Connections
	}
	return res, nil
}
