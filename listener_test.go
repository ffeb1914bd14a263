//go:build linux

package sockshare_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockshare/sockshare"
)

func init() {
	roles["listener-checks"] = listenerChecksWorker
}

// listenerChecks runs, on a listener of this package, the checks a program
// may rely on whatever the policy, and returns what failed.
func listenerChecks(ln net.Listener) (fails []string) {
	fail := func(format string, args ...any) { fails = append(fails, fmt.Sprintf(format, args...)) }
	dl, ok := ln.(interface{ SetDeadline(time.Time) error })
	if !ok {
		fail("listener %T has no SetDeadline", ln)
	} else {
		dl.SetDeadline(time.Now().Add(30 * time.Millisecond))
		_, err := ln.Accept()
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
			fail("Accept past the deadline: %v; want a timeout", err)
		}
		dl.SetDeadline(time.Time{})
	}
	client, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		return append(fails, "dial: "+err.Error())
	}
	defer client.Close()
	c, err := ln.Accept()
	if err != nil {
		return append(fails, "accept: "+err.Error())
	}
	if _, ok := c.(syscall.Conn); !ok {
		fail("accepted %T is not a syscall.Conn", c)
	}
	type tcpMethods interface {
		SetKeepAlive(bool) error
		SetNoDelay(bool) error
		CloseWrite() error
		SetLinger(int) error
	}
	if tm, ok := c.(tcpMethods); !ok {
		fail("accepted %T lacks *net.TCPConn's methods", c)
	} else if err := tm.SetKeepAlive(true); err != nil {
		fail("SetKeepAlive: %v", err)
	}
	tc, ok := sockshare.TCPConn(c)
	if !ok {
		fail("TCPConn(%T) found no *net.TCPConn", c)
	} else {
		if err := tc.SetNoDelay(true); err != nil {
			fail("SetNoDelay through TCPConn: %v", err)
		}
		// Closed behind the wrapper's back: leastconn must still count it.
		tc.Close()
	}
	if err := ln.Close(); err != nil {
		fail("Close: %v", err)
	}
	if err := ln.Close(); err == nil || !strings.Contains(err.Error(), "close tcp") || !errors.Is(err, net.ErrClosed) {
		fail("second Close: %v; want net's \"close tcp ...: use of closed network connection\"", err)
	}
	return fails
}

func listenerChecksWorker() int {
	ln, err := sockshare.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		sockshare.Send([]byte("checks listen: " + err.Error()))
		return 2
	}
	if fails := listenerChecks(ln); len(fails) > 0 {
		sockshare.Send([]byte("checks failed: " + strings.Join(fails, "; ")))
	} else {
		sockshare.Send([]byte("checks ok"))
	}
	select {} // the master's SIGTERM ends it
}

// TestListenerSameUnderEveryPolicy: the listener and the accepted
// connections behave alike under every policy and standalone: SetDeadline
// times Accept out, connections are syscall.Conn with *net.TCPConn's
// methods, TCPConn finds the *net.TCPConn, a second Close says "close tcp",
// and under leastconn a connection closed through TCPConn is no longer
// counted as active.
func TestListenerSameUnderEveryPolicy(t *testing.T) {
	t.Run("standalone", func(t *testing.T) {
		ln, err := sockshare.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if fails := listenerChecks(ln); len(fails) > 0 {
			t.Fatal(strings.Join(fails, "\n"))
		}
	})
	for _, v := range variants("shared", "rr", "leastconn", "reuseport") {
		v.run(t, func(t *testing.T) {
			c := startCluster(t, sockshare.Config{Workers: 1, Policy: v.policy, Dispatch: v.dispatch}, "listener-checks")
			if got := message(c, "checks", 20*time.Second); got != " ok" {
				t.Fatalf("checks%s", got)
			}
			if v.policy != "leastconn" || v.dispatch == sockshare.DispatchKernel {
				// Under kernel dispatch the group is gone once the worker
				// closed its listener: there is no count left to read.
				return
			}
			kernel := false
			deadline := time.Now().Add(2 * time.Second)
			for {
				ws := c.m.Workers()
				if len(ws) == 1 && ((!kernel && ws[0].Active == 0 && ws[0].Taken == 1) || (kernel && ws[0].Open == 0 && ws[0].Chosen >= 1)) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("2s after the connection was closed through TCPConn: %+v; want 1 accepted, 0 active", ws)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}
