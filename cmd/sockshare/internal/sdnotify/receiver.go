package sdnotify

import (
	"context"
	"fmt"
	"maps"
	"net"
	"sync"
)

const (
	// queueLen is how many accepted messages Messages buffers.
	queueLen = 64
	// pendingMax is how many datagrams are kept while no pid is expected
	// yet (the worker may report before its starter learns its pid).
	pendingMax = 16
)

// Stats counts what a Receiver did with the datagrams it read.
type Stats struct {
	// Accepted came from the expected pid.
	Accepted uint64
	// Foreign came from another process and were dropped.
	Foreign uint64
	// Early arrived before Expect beyond the pendingMax kept, and were
	// dropped.
	Early uint64
	// Oversize were longer than MaxDatagram and were dropped.
	Oversize uint64
	// NoCreds carried no sender credentials and were dropped.
	NoCreds uint64
	// Overflow were accepted but not queued on Messages, whose reader
	// was behind. WaitReady does not depend on Messages and still sees
	// them.
	Overflow uint64
	// ClosedFDs counts descriptors received with SCM_RIGHTS and closed.
	ClosedFDs uint64
}

// Receiver receives the sd_notify messages of one worker. Its methods are
// safe for concurrent use.
type Receiver struct {
	conn  *net.UnixConn
	addr  string
	msgs  chan Message
	ready chan struct{} // closed by the first accepted READY=1
	done  chan struct{} // closed when the reading goroutine has returned

	mu       sync.Mutex
	expect   int
	pending  []Message
	readyMsg Message
	isReady  bool
	closed   bool
	readErr  error // why the reading goroutine stopped, if not Close
	stats    Stats

	closeOnce sync.Once
	closeErr  error
}

func newReceiver(conn *net.UnixConn, addr string) *Receiver {
	return &Receiver{
		conn:  conn,
		addr:  addr,
		msgs:  make(chan Message, queueLen),
		ready: make(chan struct{}),
		done:  make(chan struct{}),
	}
}

// Addr is the value for the worker's NOTIFY_SOCKET.
func (r *Receiver) Addr() string { return r.addr }

// Expect sets the pid whose messages are accepted; any other sender's are
// dropped. Until the first call, datagrams are held (up to 16), because a
// worker may report before its starter has the pid to give; Expect then
// accepts the held ones from pid, in order, and drops the rest. A later
// call switches to another pid.
func (r *Receiver) Expect(pid int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.expect = pid
	if pid == 0 {
		return
	}
	for _, m := range r.pending {
		if m.PID == pid {
			r.accept(m)
		} else {
			r.stats.Foreign++
		}
	}
	r.pending = nil
}

// Messages delivers the accepted messages, in the order they were sent. It
// is buffered and never blocks the receiver: messages that find it full
// are counted in Stats.Overflow and lost to this channel. It is closed by
// Close.
func (r *Receiver) Messages() <-chan Message { return r.msgs }

// WaitReady returns the first accepted message with READY=1, whether it
// came before the call or not, and whether or not Messages was read. It
// returns an error wrapping ctx.Err() when ctx ends first, and one wrapping
// net.ErrClosed once the receiver is closed.
func (r *Receiver) WaitReady(ctx context.Context) (Message, error) {
	select {
	case <-r.ready:
		return r.readyMessage(), nil
	default:
	}
	select {
	case <-r.ready:
		return r.readyMessage(), nil
	case <-ctx.Done():
		return Message{}, fmt.Errorf("sdnotify: wait for READY=1 on %s: %w", r.addr, ctx.Err())
	case <-r.done:
		select {
		case <-r.ready: // READY=1 was the last datagram read
			return r.readyMessage(), nil
		default:
		}
		r.mu.Lock()
		err := r.readErr
		r.mu.Unlock()
		if err == nil {
			err = net.ErrClosed
		}
		return Message{}, fmt.Errorf("sdnotify: wait for READY=1 on %s: %w", r.addr, err)
	}
}

func (r *Receiver) readyMessage() Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.readyMsg
	m.Fields = maps.Clone(m.Fields) // the copy on Messages shares the map
	return m
}

// Stats returns the counts so far.
func (r *Receiver) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

// Close stops the reading goroutine, waits for it, closes the socket and
// the Messages channel. It is idempotent.
func (r *Receiver) Close() error {
	r.closeOnce.Do(func() {
		r.closeErr = r.conn.Close() // wakes the reader with net.ErrClosed
		<-r.done
		r.mu.Lock()
		r.closed = true
		close(r.msgs)
		r.mu.Unlock()
		if r.closeErr != nil {
			r.closeErr = fmt.Errorf("sdnotify: close %s: %w", r.addr, r.closeErr)
		}
	})
	return r.closeErr
}

// receive sorts a message read by the reading goroutine.
func (r *Receiver) receive(m Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.expect == 0 && len(r.pending) < pendingMax:
		r.pending = append(r.pending, m)
	case r.expect == 0:
		r.stats.Early++
	case m.PID == r.expect:
		r.accept(m)
	default:
		r.stats.Foreign++
	}
}

// accept records m and queues it; r.mu is held.
func (r *Receiver) accept(m Message) {
	if r.closed {
		return
	}
	r.stats.Accepted++
	if m.Ready && !r.isReady {
		r.isReady = true
		r.readyMsg = m
		close(r.ready)
	}
	select {
	case r.msgs <- m:
	default:
		r.stats.Overflow++
	}
}

// count adds to a drop counter under r.mu.
func (r *Receiver) count(f func(*Stats)) {
	r.mu.Lock()
	f(&r.stats)
	r.mu.Unlock()
}
