//go:build linux

package sockshare_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sockshare/sockshare"
)

// TestKernelRoundRobin: under kernel dispatch rr spreads short connections
// evenly without the master accepting any: its dispatcher counts none, the
// program's per-slot counters account for every one, and the workers'
// counts differ by at most 1% of the total (the program runs again for a
// SYN it already chose a slot for when the client retransmits it, or when
// the SYN meets a TIME_WAIT socket; docs/KERNEL.md).
func TestKernelRoundRobin(t *testing.T) {
	v := variant{"rr-kernel", "rr", sockshare.DispatchKernel}
	v.run(t, func(t *testing.T) {
		c := startCluster(t, sockshare.Config{Workers: 2, Policy: "rr", Dispatch: v.dispatch}, "http")
		const n = 1000
		per, errs := tally(load(c.addr, "/", n, 8))
		if len(errs) > 0 {
			t.Fatalf("%d of %d failed, first %v", len(errs), n, errs[0])
		}
		counts := mapValues(per)
		if len(counts) != 2 || slices.Max(counts)-slices.Min(counts) > n/100 {
			t.Errorf("per worker %v; want 2 workers within %d of each other", per, n/100)
		}
		ls := c.m.Listeners()
		if len(ls) != 1 {
			t.Fatalf("Listeners() = %+v", ls)
		}
		l := ls[0]
		var chosen uint64
		for _, x := range l.Chosen {
			chosen += x
		}
		if l.Dispatch != sockshare.DispatchKernel || l.Accepted != 0 || chosen < n || len(l.Chosen) != 2 {
			t.Errorf("Listeners()[0] = %+v; want dispatch kernel, nothing accepted by the master, at least %d chosen over 2 slots", l, n)
		}
		// Chosen can exceed what was answered by the SYNs the program saw
		// twice (docs/KERNEL.md), never fall short of it.
		extra := chosen - n
		for _, w := range c.m.Workers() {
			if got := uint64(per[strconv.Itoa(w.ID)]); w.Chosen < got || w.Chosen-got > extra {
				t.Errorf("worker %d: Chosen %d, answered %d (%d SYNs seen twice)", w.ID, w.Chosen, got, extra)
			}
		}
		t.Logf("per worker %v, chosen per slot %v", per, l.Chosen)
	})
}

func init() {
	roles["dispatch-check"] = dispatchCheckRole
}

// dispatchCheckRole prints what NewMaster says to Dispatch kernel and
// auto in a process that may not load BPF programs.
func dispatchCheckRole() int {
	_, errK := sockshare.NewMaster(sockshare.Config{Workers: 1, Dispatch: sockshare.DispatchKernel})
	m, errA := sockshare.NewMaster(sockshare.Config{Workers: 1, Dispatch: sockshare.DispatchAuto,
		Logger: slog.New(slog.NewTextHandler(os.Stdout, nil))})
	d := ""
	if m != nil {
		d = m.Dispatch()
	}
	fmt.Printf("kernel: %v (unsupported=%v)\nauto: %v %s\n", errK, errors.Is(errK, errors.ErrUnsupported), errA, d)
	return 0
}

// TestKernelDispatchWithoutPrivilege: without CAP_BPF and CAP_NET_ADMIN
// (the test binary run as nobody), Dispatch kernel is an error matching
// errors.ErrUnsupported that names the reason, and auto falls back to the
// master with one log line.
func TestKernelDispatchWithoutPrivilege(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to drop to nobody")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("no setpriv here")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", os.Args[0])
	cmd.Env = append(os.Environ(), roleEnv+"=dispatch-check")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	s := string(out)
	if !strings.Contains(s, "(unsupported=true)") || !strings.Contains(s, "permission") || !strings.Contains(s, "auto: <nil> master") ||
		strings.Count(s, "kernel dispatch unavailable") != 1 {
		t.Fatalf("output:\n%s\nwant kernel refused naming the missing permission, and auto on the master with one log line", s)
	}
	t.Logf("%s", s)
}

// TestKernelLeastConn: under kernel leastconn each worker counts its open
// connections where the program reads them; with one worker holding five
// long-lived connections, every new connection goes to the other.
func TestKernelLeastConn(t *testing.T) {
	v := variant{"leastconn-kernel", "leastconn", sockshare.DispatchKernel}
	v.run(t, func(t *testing.T) {
		c := startCluster(t, sockshare.Config{Workers: 2, Policy: "leastconn", Dispatch: v.dispatch}, "http")
		if l := c.m.Listeners()[0]; l.Dispatch != sockshare.DispatchKernel || len(l.Open) != 2 {
			t.Fatalf("Listeners()[0] = %+v; want kernel dispatch with 2 open counts", l)
		}
		// Hold keep-alive connections until one worker has five.
		held := map[string][]net.Conn{}
		busy := ""
		for i := 0; busy == "" && i < 40; i++ {
			conn, err := net.Dial("tcp", c.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			w := resp.Header.Get("X-Worker")
			held[w] = append(held[w], conn)
			if len(held[w]) == 5 {
				busy = w
			}
		}
		// Close the other worker's connections; wait until it counts none.
		idleSlot := -1
		for _, w := range c.m.Workers() {
			if strconv.Itoa(w.ID) != busy {
				idleSlot = w.Slot
				for _, conn := range held[strconv.Itoa(w.ID)] {
					conn.Close()
				}
			}
		}
		if !pollUntil(10*time.Second, func() bool { return c.m.Listeners()[0].Open[idleSlot] == 0 }) {
			t.Fatalf("open counts %v; want slot %d at 0", c.m.Listeners()[0].Open, idleSlot)
		}
		for i := range 20 {
			r := get(c.addr, "/")
			if r.err != nil || r.status != 200 {
				t.Fatalf("request %d: %+v", i, r)
			}
			if r.worker == busy {
				t.Fatalf("request %d went to worker %s, which holds 5 connections; open counts %v", i, busy, c.m.Listeners()[0].Open)
			}
		}
		t.Logf("open counts at the end: %v", c.m.Listeners()[0].Open)
	})
}
