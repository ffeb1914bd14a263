//go:build linux

package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A bad command line is one line on stderr and status 2, before anything
// starts: the command (touch) never runs, nothing is printed on stdout.
func TestBadUsage(t *testing.T) {
	tests := []struct {
		name  string
		args  []string // before "-- touch <file>"
		want  string   // in the line
		noCmd bool     // nothing after "--"
	}{
		{"no command", []string{"-listen", "tcp://127.0.0.1:0"}, "no command", true},
		{"unknown policy", []string{"-policy", "nosuch", "-listen", "tcp://127.0.0.1:0"}, `-policy: unknown policy "nosuch"`, false},
		{"unknown dispatch", []string{"-dispatch", "nosuch", "-listen", "tcp://127.0.0.1:0"}, `-dispatch must be auto, master or kernel, got "nosuch"`, false},
		{"listen scheme", []string{"-listen", "http://127.0.0.1:0"}, `scheme "http"`, false},
		{"listen no scheme", []string{"-listen", "127.0.0.1:0"}, "no scheme", false},
		{"listen bad IP", []string{"-listen", "tcp://256.1.1.1:0"}, `host "256.1.1.1"`, false},
		{"listen bad host", []string{"-listen", "tcp://no_such$host:0"}, `host "no_such$host"`, false},
		{"listen no host", []string{"-listen", "tcp://:0"}, "missing host", false},
		{"listen port range", []string{"-listen", "tcp://127.0.0.1:65536"}, "port 65536 out of range", false},
		{"listen port name", []string{"-listen", "tcp://127.0.0.1:http"}, `port "http" is not a number`, false},
		{"listen no port", []string{"-listen", "tcp://127.0.0.1"}, "missing port", false},
		{"workers 0", []string{"-workers", "0", "-listen", "tcp://127.0.0.1:0"}, "-workers must be between 1 and 1024, got 0", false},
		{"workers 1025", []string{"-workers", "1025", "-listen", "tcp://127.0.0.1:0"}, "-workers must be between 1 and 1024, got 1025", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			marker := filepath.Join(t.TempDir(), "started")
			args := append(append([]string{}, tt.args...), "--")
			if !tt.noCmd {
				args = append(args, "touch", marker)
			}
			r := startRunner(t, args...)
			if code := r.wait(exitTimeout); code != 2 {
				t.Errorf("exit status %v, want 2", r.state)
			}
			lines := r.stderr.lines()
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "sockshare: ") || !strings.Contains(lines[0], tt.want) {
				t.Errorf("stderr %q; want one line \"sockshare: ...%s...\"", lines, tt.want)
			}
			if out := r.stdout.lines(); len(out) != 0 {
				t.Errorf("stdout %q; want nothing", out)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Errorf("the command ran")
			}
			r.checkNoneLeft()
		})
	}
}

// When the workers cannot run, the runner exits 1 with one line naming
// the cause, and leaves no process.
func TestCannotRun(t *testing.T) {
	t.Run("port in use", func(t *testing.T) {
		t.Parallel()
		for _, pol := range []string{"shared", "reuseport"} {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			marker := filepath.Join(t.TempDir(), "started")
			r := startRunner(t, "-workers", "2", "-policy", pol, "-listen", "tcp://"+ln.Addr().String(), "--", "touch", marker)
			if code := r.wait(exitTimeout); code != 1 {
				t.Errorf("%s: exit status %v, want 1", pol, r.state)
			}
			if line := r.exitLine(); !strings.Contains(line, ln.Addr().String()) || !strings.Contains(line, "address already in use") {
				t.Errorf("%s: %q; want the address and \"address already in use\"", pol, line)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Errorf("%s: a worker ran", pol)
			}
			r.checkNoneLeft()
		}
	})
	t.Run("command not found", func(t *testing.T) {
		t.Parallel()
		r := startRunner(t, "-workers", "2", "-policy", "shared", "-listen", "tcp://127.0.0.1:0", "--", "sockshare-test-no-such-command")
		if code := r.wait(exitTimeout); code != 1 {
			t.Errorf("exit status %v, want 1", r.state)
		}
		if line := r.exitLine(); !strings.Contains(line, "command not found: sockshare-test-no-such-command") {
			t.Errorf("%q; want it to name the command", line)
		}
		r.checkNoneLeft()
	})
	t.Run("worker exits at once", func(t *testing.T) {
		t.Parallel()
		needCommand(t, "python3")
		start := time.Now()
		r := startRunner(t, "-workers", "2", "-policy", "shared", "-listen", "tcp://127.0.0.1:0",
			"--", "python3", "-c", "import sys; sys.exit(3)")
		if code := r.wait(exitTimeout); code != 1 {
			t.Errorf("exit status %v, want 1", r.state)
		}
		line := r.exitLine()
		for _, want := range []string{"gave up", "python3", "slot 0: worker", "slot 1: worker", "exited with status 3"} {
			if !strings.Contains(line, want) {
				t.Errorf("%q; want %q in it", line, want)
			}
		}
		if out := r.stdout.lines(); len(out) != 0 {
			t.Errorf("stdout %q; want no listening line", out)
		}
		r.checkNoneLeft()
		t.Logf("gave up after %v", time.Since(start).Round(time.Millisecond))
	})
}

// Under rr with master dispatch the master hands connections over
// sockshare's IPC channel, which a foreign program does not speak: the
// runner says so, naming what works instead, and exits 1, whether the
// program exits at once (worker.py finds no socket) or stays up without
// ever speaking IPC.
func TestForeignWorkerUnderMasterDispatch(t *testing.T) {
	needCommand(t, "python3")
	for name, cmd := range map[string][]string{
		"exits":    pythonWorker,
		"stays up": {"python3", "-c", "import time; time.sleep(60)"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			args := append([]string{"-workers", "2", "-policy", "rr", "-dispatch", "master",
				"-listen", "tcp://127.0.0.1:0", "--"}, cmd...)
			r := startRunner(t, args...)
			if code := r.wait(15 * time.Second); code != 1 {
				t.Errorf("exit status %v, want 1", r.state)
			}
			line := r.exitLine()
			for _, want := range []string{"IPC", "-policy shared", "-policy reuseport", "-dispatch kernel"} {
				if !strings.Contains(line, want) {
					t.Errorf("%q; want %q in it", line, want)
				}
			}
			if out := r.stdout.lines(); len(out) != 0 {
				t.Errorf("stdout %q; want no listening line", out)
			}
			r.checkNoneLeft()
			t.Logf("exited after %v", time.Since(start).Round(time.Millisecond))
		})
	}
}
