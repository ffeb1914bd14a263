//go:build linux

package main

// Bad input to the hello binary: each mistake prints exactly one line on
// stderr naming it, exits 2, and leaves no process behind.

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

const validPolicyList = "(valid: shared, rr, leastconn, reuseport, sticky)"

// buildHelloForBadInput builds the example into a fresh directory.
func buildHelloForBadInput(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "hello")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// runHelloBadInput runs bin with args and env, bounded in time, and
// returns its exit code, stdout and stderr.
func runHelloBadInput(t *testing.T, bin string, env []string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("hello %v did not exit within 60s; stderr:\n%s", args, errb.String())
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("hello %v: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

// processesRunning lists the pids whose executable is bin.
func processesRunning(t *testing.T, bin string) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		// Zombies and other users' processes give errors: neither runs bin.
		if exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err == nil && exe == bin {
			pids = append(pids, pid)
		}
	}
	return pids
}

func TestHelloBadInput(t *testing.T) {
	bin := buildHelloForBadInput(t)

	// A port in use: the workers' Listen fails in the master, which
	// reports it once and shuts down.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	inUse := busy.Addr().String()

	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{name: "unknown policy", args: []string{"-policy", "bogus"},
			want: `hello: unknown policy "bogus" ` + validPolicyList},
		{name: "unknown policy in the environment", env: []string{"SOCKSHARE_POLICY=bogus"},
			want: `hello: SOCKSHARE_POLICY: unknown policy "bogus" ` + validPolicyList},
		{name: "port out of range", args: []string{"-addr", "127.0.0.1:99999"},
			want: `hello: bad -addr "127.0.0.1:99999": address 99999: invalid port`},
		{name: "malformed address", args: []string{"-addr", "not an address"},
			want: `hello: bad -addr "not an address": address not an address: missing port in address`},
		{name: "zero workers", args: []string{"-workers", "0"},
			want: "hello: -workers must be between 1 and 1024, got 0"},
		{name: "absurd workers", args: []string{"-workers", "5000"},
			want: "hello: -workers must be between 1 and 1024, got 5000"},
		{name: "not a number", args: []string{"-workers", "two"},
			want: `hello: invalid value "two" for flag -workers: parse error`},
		{name: "unknown flag", args: []string{"-bogus"},
			want: "hello: flag provided but not defined: -bogus"},
		{name: "port in use", args: []string{"-workers", "2", "-addr", inUse},
			want: "hello: listen " + inUse + ": bind: address already in use"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runHelloBadInput(t, bin, tc.env, tc.args...)
			if code != 2 {
				t.Errorf("exit code %d, want 2", code)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			if stderr != tc.want+"\n" {
				t.Errorf("stderr\n got %q\nwant %q", stderr, tc.want+"\n")
			}
			if pids := processesRunning(t, bin); len(pids) > 0 {
				t.Errorf("processes of %s still running after it exited: %v", bin, pids)
			}
		})
	}
	// The port is still the other listener's.
	if c, err := net.DialTimeout("tcp", inUse, 5*time.Second); err != nil {
		t.Errorf("the busy port after the runs: %v", err)
	} else {
		c.Close()
	}
	if pids := processesRunning(t, bin); len(pids) > 0 {
		t.Errorf("leftover processes of %s: %v", bin, pids)
	}
}
