//go:build unix

package tcp

import (
	"errors"
	"net"
	"os"
	"sync"
	"time"
)

// SocketListener is the worker side of shared and reuseport: the worker
// accepts on its own duplicate of the socket the master holds. The master
// may also hand it connections, the ones it took from the queue of a
// reuseport slot socket that left the group; Accept returns those first.
//
// It embeds the *net.TCPListener, so File, SyscallConn and SetDeadline work
// as on any TCP listener.
type SocketListener struct {
	*net.TCPListener
	acker Acker

	mu       sync.Mutex
	closed   bool
	deadline time.Time // the caller's, restored after a wake-up
	inbox    inbox
}

// aLongTimeAgo is a deadline in the past: it wakes a blocked Accept.
var aLongTimeAgo = time.Unix(1, 0)

// NewSocketListener wraps ln, which it owns from now on. window bounds the
// handed connections it queues; a is told about them and about Close.
func NewSocketListener(ln *net.TCPListener, window int, a Acker) *SocketListener {
	return &SocketListener{TCPListener: ln, acker: a, inbox: make(inbox, max(window, 1))}
}

// Deliver queues connections handed by the master for Accept, and wakes an
// Accept blocked on the socket. It takes ownership of fds; what it cannot
// queue is closed and handed back.
func (l *SocketListener) Deliver(ids []uint64, fds []int) {
	l.mu.Lock()
	queued, back := l.inbox.put(l.closed, ids, fds)
	if queued {
		// Accept restores the caller's deadline when it sees this one.
		l.TCPListener.SetDeadline(aLongTimeAgo)
	}
	l.mu.Unlock()
	if len(back) > 0 {
		l.acker.Returned(back)
	}
}

// Accept returns the next handed connection if there is one, else the next
// connection of the socket.
func (l *SocketListener) Accept() (net.Conn, error) {
	for {
		select {
		case h := <-l.inbox:
			c, err := take(h, l.acker)
			if err != nil {
				return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: err}
			}
			return c, nil
		default:
		}
		c, err := l.TCPListener.Accept()
		if err != nil && l.wokenBy(err) {
			continue
		}
		return c, err
	}
}

// wokenBy reports whether err is the timeout Deliver caused rather than the
// caller's deadline, and if so restores the caller's deadline.
func (l *SocketListener) wokenBy(err error) bool {
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || (!l.deadline.IsZero() && !time.Now().Before(l.deadline)) {
		return false
	}
	l.TCPListener.SetDeadline(l.deadline)
	return true
}

// SetDeadline sets the deadline of Accept, as on a *net.TCPListener.
func (l *SocketListener) SetDeadline(t time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.deadline = t
	return l.TCPListener.SetDeadline(t)
}

// Close closes the socket, tells the master, and hands back the connections
// handed to it and not yet accepted.
func (l *SocketListener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return l.TCPListener.Close() // net's own "use of closed" error
	}
	l.closed = true
	err := l.TCPListener.Close()
	back := l.inbox.drain()
	l.mu.Unlock()
	ackClose(l.acker, back)
	return err
}

// File returns a duplicate of the socket, as (*net.TCPListener).File does.
func (l *SocketListener) File() (*os.File, error) { return l.TCPListener.File() }
