//go:build unix

package worker

import (
	"net"
	"sync"
	"time"

	"github.com/sockshare/sockshare/internal/kdispatch"
	"github.com/sockshare/sockshare/tcp"
)

// countingListener is a worker's listener under kernel leastconn: it keeps
// the worker's count of open connections in the map the kernel's program
// reads (an atomic add in shared memory, no syscall), +1 when Accept
// returns a connection and -1 when it is closed.
type countingListener struct {
	*tcp.SocketListener
	counts *kdispatch.ConnCounts
	slot   int

	mu     sync.Mutex
	open   int  // connections not yet closed
	closed bool // the listener
}

func newCountingListener(sl *tcp.SocketListener, counts *kdispatch.ConnCounts, slot int) *countingListener {
	return &countingListener{SocketListener: sl, counts: counts, slot: slot}
}

// Accept counts the connection it returns.
func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.SocketListener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.open++
	l.mu.Unlock()
	l.counts.Add(l.slot, 1)
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return &countedOther{Conn: c, l: l}, nil
	}
	return &countedConn{TCPConn: tc, l: l}, nil
}

// Close closes the listener; the counts stay mapped until the last
// connection it returned is closed.
func (l *countingListener) Close() error {
	err := l.SocketListener.Close()
	l.mu.Lock()
	l.closed = true
	unmap := l.open == 0
	l.mu.Unlock()
	if unmap {
		l.counts.Close()
	}
	return err
}

func (l *countingListener) done() {
	l.counts.Add(l.slot, -1)
	l.mu.Lock()
	l.open--
	unmap := l.closed && l.open == 0
	l.mu.Unlock()
	if unmap {
		l.counts.Close()
	}
}

// countedConn is a connection counted by a countingListener. It embeds the
// *net.TCPConn (every method, syscall.Conn); TCPConn finds it through
// Unwrap, and a close through what Unwrap returned is noticed by polling.
type countedConn struct {
	*net.TCPConn
	l       *countingListener
	once    sync.Once
	watched sync.Once
}

func (c *countedConn) Close() error {
	err := c.TCPConn.Close()
	c.once.Do(c.l.done)
	return err
}

// Unwrap returns the *net.TCPConn, and from then on watches it: closing it
// directly skips this wrapper's Close.
func (c *countedConn) Unwrap() net.Conn {
	c.watched.Do(func() {
		go func() {
			t := time.NewTicker(exposedPoll)
			defer t.Stop()
			for range t.C {
				if isClosedConn(c.TCPConn) {
					c.once.Do(c.l.done)
					return
				}
			}
		}()
	})
	return c.TCPConn
}

// exposedPoll is how often a connection handed out by Unwrap is checked.
const exposedPoll = 250 * time.Millisecond

type countedOther struct {
	net.Conn
	l    *countingListener
	once sync.Once
}

func (c *countedOther) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.l.done)
	return err
}

func (c *countedOther) Unwrap() net.Conn { return c.Conn }
