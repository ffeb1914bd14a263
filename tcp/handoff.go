//go:build unix

package tcp

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
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

// inbox queues the connections handed to a worker's listener (a
// HandoffListener, or a SocketListener after a reuseport release) until
// its Accept takes them. Its capacity is the listener's window.
type inbox chan handed

// put queues what fits, unless the listener is closed, and closes the rest,
// whose ids it returns for Acker.Returned. The caller holds the listener's
// lock, so Close cannot drain the inbox between the check and the send.
func (q inbox) put(closed bool, ids []uint64, fds []int) (queued bool, back []uint64) {
	for i, fd := range fds {
		if !closed {
			select {
			case q <- handed{ids[i], fd}:
				queued = true
				continue
			default:
			}
		}
		syscall.Close(fd)
		back = append(back, ids[i])
	}
	return queued, back
}

// drain closes every queued connection and returns their ids, for
// Acker.Returned.
func (q inbox) drain() (back []uint64) {
	for {
		select {
		case h := <-q:
			syscall.Close(h.fd)
			back = append(back, h.id)
		default:
			return back
		}
	}
}

// ackClose tells the master that a listener closed, then hands back what its
// inbox held, in that order (see Acker.ListenerClosed).
func ackClose(a Acker, back []uint64) {
	a.ListenerClosed()
	if len(back) > 0 {
		a.Returned(back)
	}
}

// take makes a net.Conn of a handed connection and acknowledges it: Taken,
// or Returned when that fails (typically EMFILE on the dup), so that
// another worker serves it while the caller's server backs off.
func take(h handed, a Acker) (net.Conn, error) {
	c, err := fdConn(h.fd)
	if err != nil {
		a.Returned([]uint64{h.id})
		return nil, err
	}
	a.Taken(h.id)
	return c, nil
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

	mu       sync.Mutex
	closed   bool
	deadline time.Time
	timer    *time.Timer   // fires at deadline
	expired  chan struct{} // closed when deadline passes; replaced by SetDeadline
	inbox    inbox
	done     chan struct{}

	exposed exposedConns // leastconn connections unwrapped by the program
}

// NewHandoffListener returns a listener reporting addr. window is the most
// connections the master may have in flight to it; trackClose makes every
// accepted connection report its Close.
func NewHandoffListener(addr net.Addr, window int, trackClose bool, a Acker) *HandoffListener {
	if window < 1 {
		window = 1
	}
	l := &HandoffListener{
		addr:    addr,
		acker:   a,
		track:   trackClose,
		inbox:   make(inbox, window),
		done:    make(chan struct{}),
		expired: make(chan struct{}),
	}
	l.exposed.acker = a
	return l
}

// SetDeadline sets the deadline of Accept, as on a *net.TCPListener: past
// it, Accept returns an error whose Timeout() is true. The zero time means
// none.
func (l *HandoffListener) SetDeadline(t time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return l.opErr("set", net.ErrClosed)
	}
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	l.deadline = t
	if isClosedChan(l.expired) {
		l.expired = make(chan struct{})
	}
	if t.IsZero() {
		return nil
	}
	expired := l.expired
	if d := time.Until(t); d <= 0 {
		close(expired)
	} else {
		l.timer = time.AfterFunc(d, func() {
			l.mu.Lock()
			if l.expired == expired && !isClosedChan(expired) {
				close(expired)
			}
			l.mu.Unlock()
		})
	}
	return nil
}

func isClosedChan(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// SyscallConn reports errors.ErrUnsupported: under rr and leastconn the
// worker holds no listening socket, the master does.
func (l *HandoffListener) SyscallConn() (syscall.RawConn, error) {
	return nil, l.opErr("raw-control", errNoSocket)
}

// File reports errors.ErrUnsupported, as SyscallConn does.
func (l *HandoffListener) File() (*os.File, error) {
	return nil, l.opErr("file", errNoSocket)
}

var errNoSocket = fmt.Errorf("the master accepts under this policy; the worker has no listening socket: %w", errors.ErrUnsupported)

// Deliver queues connections handed by the master for Accept. It takes
// ownership of fds. Connections it cannot queue (listener closed, or more
// than the window) are closed here and handed back.
func (l *HandoffListener) Deliver(ids []uint64, fds []int) {
	l.mu.Lock()
	_, back := l.inbox.put(l.closed, ids, fds)
	l.mu.Unlock()
	if len(back) > 0 {
		l.acker.Returned(back)
	}
}

// Accept waits for the next handed connection, or the deadline.
func (l *HandoffListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	expired := l.expired
	l.mu.Unlock()
	select {
	case <-l.done:
		return nil, l.opErr("accept", net.ErrClosed)
	case <-expired:
		return nil, l.opErr("accept", os.ErrDeadlineExceeded)
	default:
	}
	select {
	case h := <-l.inbox:
		c, err := take(h, l.acker)
		if err != nil {
			return nil, l.opErr("accept", err)
		}
		if l.track {
			return newTrackedConn(c, h.id, l.acker, &l.exposed), nil
		}
		return c, nil
	case <-l.done:
		return nil, l.opErr("accept", net.ErrClosed)
	case <-expired:
		return nil, l.opErr("accept", os.ErrDeadlineExceeded)
	}
}

func (l *HandoffListener) opErr(op string, err error) error {
	return &net.OpError{Op: op, Net: l.addr.Network(), Addr: l.addr, Err: err}
}

// Close stops Accept and hands every queued connection back to the master.
func (l *HandoffListener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return l.opErr("close", net.ErrClosed)
	}
	l.closed = true
	if l.timer != nil {
		l.timer.Stop()
	}
	close(l.done)
	back := l.inbox.drain()
	l.mu.Unlock()
	ackClose(l.acker, back)
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
// embeds *net.TCPConn, so every TCP method (SetKeepAlive, SyscallConn,
// ReadFrom for sendfile/splice, ...) is there; a type assertion to
// *net.TCPConn must go through Unwrap. A connection closed through what
// Unwrap returned is still reported: see exposedConns.
type trackedConn struct {
	*net.TCPConn
	id      uint64
	acker   Acker
	exposed *exposedConns
	once    sync.Once
}

type trackedOther struct {
	net.Conn
	id    uint64
	acker Acker
	once  sync.Once
}

func newTrackedConn(c net.Conn, id uint64, a Acker, x *exposedConns) net.Conn {
	if tc, ok := c.(*net.TCPConn); ok {
		return &trackedConn{TCPConn: tc, id: id, acker: a, exposed: x}
	}
	return &trackedOther{Conn: c, id: id, acker: a}
}

func (c *trackedConn) Close() error {
	err := c.TCPConn.Close()
	c.once.Do(func() {
		c.exposed.forget(c.id)
		c.acker.Closed(c.id)
	})
	return err
}

// Unwrap returns the underlying *net.TCPConn. Its Close skips this
// wrapper, so from now on the listener also watches the connection itself
// and reports its close within ExposedPollInterval.
func (c *trackedConn) Unwrap() net.Conn {
	c.exposed.watch(c)
	return c.TCPConn
}

func (c *trackedOther) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.acker.Closed(c.id) })
	return err
}

// Unwrap returns the underlying connection.
func (c *trackedOther) Unwrap() net.Conn { return c.Conn }

// ExposedPollInterval is how often a leastconn listener checks whether a
// connection handed out by Unwrap was closed behind its wrapper's back.
const ExposedPollInterval = 250 * time.Millisecond

// exposedConns watches the leastconn connections whose *net.TCPConn the
// program took out with Unwrap, so that closing it directly cannot keep the
// master counting the connection forever.
type exposedConns struct {
	acker Acker
	mu    sync.Mutex
	conns map[uint64]*trackedConn
}

func (x *exposedConns) watch(c *trackedConn) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.conns == nil {
		x.conns = map[uint64]*trackedConn{}
	}
	if len(x.conns) == 0 {
		go x.poll()
	}
	x.conns[c.id] = c
}

func (x *exposedConns) forget(id uint64) {
	x.mu.Lock()
	delete(x.conns, id)
	x.mu.Unlock()
}

// poll reports closed connections until none is watched.
func (x *exposedConns) poll() {
	t := time.NewTicker(ExposedPollInterval)
	defer t.Stop()
	for range t.C {
		x.mu.Lock()
		var closed []*trackedConn
		for id, c := range x.conns {
			if connClosed(c.TCPConn) {
				closed = append(closed, c)
				delete(x.conns, id)
			}
		}
		left := len(x.conns)
		x.mu.Unlock()
		for _, c := range closed {
			c.once.Do(func() { c.acker.Closed(c.id) })
		}
		if left == 0 {
			return
		}
	}
}

// connClosed reports whether c was closed: a closed conn's RawConn refuses
// Control.
func connClosed(c *net.TCPConn) bool {
	rc, err := c.SyscallConn()
	return err != nil || rc.Control(func(uintptr) {}) != nil
}
