//go:build unix

package tcp

import (
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
)

// Acker carries a HandoffListener's acknowledgements back to the master.
// The root package implements it over the worker's IPC channel, batching
// Taken and Closed.
type Acker interface {
	// Taken: Accept returned the connection to the program.
	Taken(id uint64)
	// Returned: connections handed back unserved, for another worker.
	Returned(ids []uint64)
	// Closed: the program closed a taken connection (leastconn only).
	Closed(id uint64)
	// ListenerClosed: stop handing connections to this listener. Sent
	// before the Returned that Close produces.
	ListenerClosed()
}

type handed struct {
	id uint64
	fd int
}

// HandoffListener is the worker side of rr and leastconn: a net.Listener
// whose connections are handed to it by the master.
//
// Close hands every connection received but not yet returned by Accept back
// to the master, which gives it to another worker: closing a listener under
// load drops nothing.
type HandoffListener struct {
	addr  net.Addr
	acker Acker
	track bool

	mu     sync.Mutex
	closed bool
	ch     chan handed
	done   chan struct{}
}

// NewHandoffListener returns a listener reporting addr. window is the most
// connections the master may have in flight to it; trackClose makes every
// accepted connection report its Close.
func NewHandoffListener(addr net.Addr, window int, trackClose bool, a Acker) *HandoffListener {
	if window < 1 {
		window = 1
	}
	return &HandoffListener{
		addr:  addr,
		acker: a,
		track: trackClose,
		ch:    make(chan handed, window),
		done:  make(chan struct{}),
	}
}

// Deliver queues connections handed by the master for Accept. It takes
// ownership of fds. Connections it cannot queue (listener closed, or more
// than the window) are closed here and handed back.
func (l *HandoffListener) Deliver(ids []uint64, fds []int) {
	var back []uint64
	l.mu.Lock()
	for i, fd := range fds {
		if !l.closed {
			select {
			case l.ch <- handed{ids[i], fd}:
				continue
			default:
			}
		}
		syscall.Close(fd)
		back = append(back, ids[i])
	}
	l.mu.Unlock()
	if len(back) > 0 {
		l.acker.Returned(back)
	}
}

// Accept waits for the next handed connection.
func (l *HandoffListener) Accept() (net.Conn, error) {
	for {
		select {
		case <-l.done:
			return nil, l.opErr(net.ErrClosed)
		default:
		}
		select {
		case h := <-l.ch:
			c, err := fdConn(h.fd)
			if err != nil {
				// Typically EMFILE on the dup: let another worker serve it,
				// and tell the caller, whose server backs off.
				l.acker.Returned([]uint64{h.id})
				return nil, l.opErr(err)
			}
			l.acker.Taken(h.id)
			if l.track {
				return newTrackedConn(c, h.id, l.acker), nil
			}
			return c, nil
		case <-l.done:
			return nil, l.opErr(net.ErrClosed)
		}
	}
}

func (l *HandoffListener) opErr(err error) error {
	return &net.OpError{Op: "accept", Net: l.addr.Network(), Addr: l.addr, Err: err}
}

// Close stops Accept and hands every queued connection back to the master.
func (l *HandoffListener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return l.opErr(net.ErrClosed)
	}
	l.closed = true
	close(l.done)
	var back []uint64
	for {
		select {
		case h := <-l.ch:
			syscall.Close(h.fd)
			back = append(back, h.id)
			continue
		default:
		}
		break
	}
	l.mu.Unlock()
	l.acker.ListenerClosed()
	if len(back) > 0 {
		l.acker.Returned(back)
	}
	return nil
}

// Addr is the address the master listens on.
func (l *HandoffListener) Addr() net.Addr { return l.addr }

// fdConn makes a net.Conn of a received descriptor and closes the
// descriptor (net.FileConn works on a duplicate).
func fdConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "sockshare-conn")
	if f == nil {
		return nil, fmt.Errorf("tcp: invalid connection descriptor %d", fd)
	}
	c, err := net.FileConn(f)
	f.Close()
	return c, err
}

// trackedConn reports its first Close to the master, for leastconn. It
// embeds *net.TCPConn so the TCP methods (SetKeepAlive, ReadFrom for
// sendfile/splice, ...) stay available; a type assertion to *net.TCPConn
// must go through Unwrap.
type trackedConn struct {
	*net.TCPConn
	id    uint64
	acker Acker
	once  sync.Once
}

type trackedOther struct {
	net.Conn
	id    uint64
	acker Acker
	once  sync.Once
}

func newTrackedConn(c net.Conn, id uint64, a Acker) net.Conn {
	if tc, ok := c.(*net.TCPConn); ok {
		return &trackedConn{TCPConn: tc, id: id, acker: a}
	}
	return &trackedOther{Conn: c, id: id, acker: a}
}

func (c *trackedConn) Close() error {
	err := c.TCPConn.Close()
	c.once.Do(func() { c.acker.Closed(c.id) })
	return err
}

// Unwrap returns the underlying *net.TCPConn.
func (c *trackedConn) Unwrap() net.Conn { return c.TCPConn }

func (c *trackedOther) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.acker.Closed(c.id) })
	return err
}

// Unwrap returns the underlying connection.
func (c *trackedOther) Unwrap() net.Conn { return c.Conn }
