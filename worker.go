//go:build unix

package sockshare

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sockshare/sockshare/internal/ipc"
	"github.com/sockshare/sockshare/passfd"
	"github.com/sockshare/sockshare/policy"
	"github.com/sockshare/sockshare/tcp"
	"github.com/sockshare/sockshare/udp"
)

// self is this process's worker state, nil when it is not a worker.
var self *workerState

func init() { self = startWorker() }

// workerState is the worker side of the IPC channel.
type workerState struct {
	id, slot  int
	masterPID int
	conn      *net.UnixConn
	seq       atomic.Uint32

	mu        sync.Mutex
	calls     map[uint32]chan listenReply
	listeners map[uint32]*tcp.HandoffListener
	nth       map[string]uint32
	handler   func([]byte)
	goneOnce  sync.Once
	gone      chan struct{}

	acks ackBatcher
}

type listenReply struct {
	msg ipc.Msg
	fds []int
	hl  *tcp.HandoffListener // made by the reader for rr and leastconn
	err error
}

// startWorker reads and removes the worker markers. A marked process whose
// IPC cannot be set up is not a worker: it fails loudly on stderr? No: the
// library never prints; it terminates, because a half-configured worker
// would bind addresses the master does not know about.
func startWorker() *workerState {
	idStr, ok := os.LookupEnv(envWorkerID)
	vals := map[string]string{}
	for _, k := range allMarkers {
		vals[k] = os.Getenv(k)
		os.Unsetenv(k)
	}
	if !ok {
		return nil
	}
	id, err1 := strconv.Atoi(idStr)
	slot, err2 := strconv.Atoi(vals[envSlot])
	fd, err3 := strconv.Atoi(vals[envIPCFD])
	mpid, err4 := strconv.Atoi(vals[envMasterPID])
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		// Malformed markers: this is not a worker we can serve.
		return nil
	}
	f := os.NewFile(uintptr(fd), "sockshare-ipc")
	if f == nil {
		return nil
	}
	conn, err := passfd.FileConn(f)
	if err != nil {
		return nil
	}
	w := &workerState{
		id: id, slot: slot, masterPID: mpid, conn: conn,
		calls:     map[uint32]chan listenReply{},
		listeners: map[uint32]*tcp.HandoffListener{},
		nth:       map[string]uint32{},
		gone:      make(chan struct{}),
	}
	w.acks.init(w)
	go w.readLoop()
	if err := w.send(&ipc.Msg{Type: ipc.Hello, PID: uint32(os.Getpid())}, nil); err != nil {
		w.masterLost()
	}
	// The master may have died before we got here, and Pdeathsig would
	// not have fired for us.
	if os.Getppid() != mpid {
		w.masterLost()
	}
	return w
}

func (w *workerState) send(m *ipc.Msg, fds []int) error {
	var buf [256]byte
	b, err := ipc.Append(buf[:0], m)
	if err != nil {
		return err
	}
	if err := passfd.Send(w.conn, b, fds); err != nil {
		select {
		case <-w.gone:
			return ErrMasterGone
		default:
		}
		return fmt.Errorf("sockshare: send %v to master: %w", m.Type, err)
	}
	return nil
}

// masterLost ends the worker: the master is gone, nobody will hand it
// work or supervise it. SIGTERM lets the program drain like any shutdown;
// SIGKILL after OrphanGrace makes sure it does not outlive the master for
// long.
func (w *workerState) masterLost() {
	w.goneOnce.Do(func() {
		close(w.gone)
		w.mu.Lock()
		for seq, ch := range w.calls {
			ch <- listenReply{err: ErrMasterGone}
			delete(w.calls, seq)
		}
		w.mu.Unlock()
		pid := os.Getpid()
		syscall.Kill(pid, syscall.SIGTERM)
		time.AfterFunc(OrphanGrace, func() { syscall.Kill(pid, syscall.SIGKILL) })
	})
}

func (w *workerState) readLoop() {
	buf := make([]byte, ipc.MaxMessage+1)
	for {
		n, fds, err := passfd.Recv(w.conn, buf, ipc.MaxFDs)
		if errors.Is(err, passfd.ErrTruncated) && n > 0 {
			// The kernel dropped the fds (RLIMIT_NOFILE): hand the
			// connections back; the master still holds them and gives
			// them to another worker.
			if msg, derr := ipc.Decode(buf[:n]); derr == nil && msg.Type == ipc.Conns {
				w.acks.returned(msg.IDs)
				continue
			}
		}
		if err != nil {
			passfd.CloseAll(fds)
			w.masterLost()
			return
		}
		msg, err := ipc.Decode(buf[:n])
		if err != nil || len(fds) != msg.ExpectedFDs() {
			passfd.CloseAll(fds)
			w.masterLost()
			return
		}
		switch msg.Type {
		case ipc.ListenReply:
			w.onListenReply(&msg, fds)
		case ipc.Conns:
			w.mu.Lock()
			hl := w.listeners[ipc.ListenerOf(msg.IDs[0])]
			w.mu.Unlock()
			if hl == nil {
				passfd.CloseAll(fds)
				w.acks.returned(msg.IDs)
				continue
			}
			hl.Deliver(msg.IDs, fds)
		case ipc.User:
			w.mu.Lock()
			h := w.handler
			w.mu.Unlock()
			if h != nil {
				h(msg.Payload)
			}
		default:
			passfd.CloseAll(fds)
		}
	}
}

func (w *workerState) onListenReply(msg *ipc.Msg, fds []int) {
	r := listenReply{msg: *msg, fds: fds}
	if msg.Err == "" && len(fds) == 0 && isStreamNet(msg.Network) {
		// rr or leastconn: register the listener before the next message,
		// which may already carry connections for it.
		addr, err := resolveAddr(msg.Network, msg.Addr)
		if err != nil {
			r.err = err
		} else {
			la := &listenerAcker{w: w, id: msg.Listener}
			r.hl = tcp.NewHandoffListener(addr, int(msg.Window), msg.Flags&ipc.FlagTrackClose != 0, la)
			w.mu.Lock()
			w.listeners[msg.Listener] = r.hl
			w.mu.Unlock()
		}
	}
	w.mu.Lock()
	ch := w.calls[msg.Seq]
	delete(w.calls, msg.Seq)
	w.mu.Unlock()
	if ch == nil {
		// Nobody waits (the Listen gave up): undo.
		passfd.CloseAll(fds)
		if r.hl != nil {
			r.hl.Close()
		}
		return
	}
	ch <- r
}

func resolveAddr(network, addr string) (net.Addr, error) {
	if isPacketNet(network) {
		return net.ResolveUDPAddr(network, addr)
	}
	return net.ResolveTCPAddr(network, addr)
}

// call sends a Listen request and waits for the reply.
func (w *workerState) call(ctx context.Context, req *ipc.Msg) (listenReply, error) {
	req.Seq = w.seq.Add(1)
	ch := make(chan listenReply, 1)
	w.mu.Lock()
	select {
	case <-w.gone:
		w.mu.Unlock()
		return listenReply{}, ErrMasterGone
	default:
	}
	w.calls[req.Seq] = ch
	w.mu.Unlock()
	if err := w.send(req, nil); err != nil {
		w.mu.Lock()
		delete(w.calls, req.Seq)
		w.mu.Unlock()
		return listenReply{}, err
	}
	select {
	case r := <-ch:
		return r, r.err
	case <-ctx.Done():
		w.mu.Lock()
		_, waiting := w.calls[req.Seq]
		delete(w.calls, req.Seq)
		w.mu.Unlock()
		if !waiting {
			// The reply raced with the cancellation: release it.
			r := <-ch
			passfd.CloseAll(r.fds)
			if r.hl != nil {
				r.hl.Close()
			}
		}
		return listenReply{}, ctx.Err()
	}
}

func (w *workerState) nextNth(network, address string) uint32 {
	w.mu.Lock()
	defer w.mu.Unlock()
	k := network + " " + address
	n := w.nth[k]
	w.nth[k] = n + 1
	return n
}

func (w *workerState) request(ctx context.Context, network, address, pol string) (listenReply, error) {
	if pol != "" {
		p, err := policy.Parse(pol)
		if err != nil {
			return listenReply{}, listenErr(network, address, pol, err)
		}
		pol = string(p)
	}
	req := &ipc.Msg{Type: ipc.Listen, Network: network, Addr: address, Policy: pol, Nth: w.nextNth(network, address)}
	r, err := w.call(ctx, req)
	if err != nil {
		return r, listenErr(network, address, pol, err)
	}
	if r.msg.Err != "" {
		cause := &remoteError{msg: r.msg.Err, errno: syscall.Errno(r.msg.Errno), flags: r.msg.Flags & (ipc.FlagPolicyConflict | ipc.FlagUnsupported)}
		return r, listenErr(network, address, r.msg.Policy, cause)
	}
	return r, nil
}

func (w *workerState) listen(ctx context.Context, network, address, pol string) (net.Listener, error) {
	r, err := w.request(ctx, network, address, pol)
	if err != nil {
		return nil, err
	}
	if r.hl != nil {
		return &handoffListener{HandoffListener: r.hl, w: w, id: r.msg.Listener}, nil
	}
	if len(r.fds) != 1 {
		passfd.CloseAll(r.fds)
		return nil, listenErr(network, address, r.msg.Policy, errors.New("master sent no socket"))
	}
	ln, err := tcp.FileListener(r.fds[0])
	if err != nil {
		return nil, listenErr(network, address, r.msg.Policy, err)
	}
	return ln, nil
}

func (w *workerState) listenPacket(ctx context.Context, network, address, pol string) (net.PacketConn, error) {
	r, err := w.request(ctx, network, address, pol)
	if err != nil {
		return nil, err
	}
	if len(r.fds) != 1 {
		passfd.CloseAll(r.fds)
		if r.hl != nil {
			r.hl.Close()
		}
		return nil, listenErr(network, address, r.msg.Policy, errors.New("master sent no socket"))
	}
	pc, err := udp.FilePacketConn(r.fds[0])
	if err != nil {
		return nil, listenErr(network, address, r.msg.Policy, err)
	}
	return pc, nil
}

// handoffListener unregisters itself from the worker when closed.
type handoffListener struct {
	*tcp.HandoffListener
	w  *workerState
	id uint32
}

func (l *handoffListener) Close() error {
	err := l.HandoffListener.Close()
	l.w.mu.Lock()
	if l.w.listeners[l.id] == l.HandoffListener {
		delete(l.w.listeners, l.id)
	}
	l.w.mu.Unlock()
	return err
}

func (w *workerState) ready() error {
	return w.send(&ipc.Msg{Type: ipc.Ready}, nil)
}

func (w *workerState) sendUser(p []byte) error {
	return w.send(&ipc.Msg{Type: ipc.User, Payload: p}, nil)
}

func (w *workerState) setHandler(h func([]byte)) {
	w.mu.Lock()
	w.handler = h
	w.mu.Unlock()
}

// listenerAcker is one handoff listener's tcp.Acker.
type listenerAcker struct {
	w  *workerState
	id uint32
}

func (a *listenerAcker) Taken(id uint64)       { a.w.acks.add(id, false) }
func (a *listenerAcker) Closed(id uint64)      { a.w.acks.add(id, true) }
func (a *listenerAcker) Returned(ids []uint64) { a.w.acks.returned(ids) }
func (a *listenerAcker) ListenerClosed() {
	// Pending takes first, so the master's counts are right, then stop.
	a.w.acks.flush()
	a.w.send(&ipc.Msg{Type: ipc.ListenerClosed, Listener: a.id}, nil)
}

// ackBatcher coalesces Taken and Closed acknowledgements: one goroutine
// sends whatever accumulated while the previous message was being sent, so
// under load one message carries many ids and idle latency stays one send.
type ackBatcher struct {
	w      *workerState
	mu     sync.Mutex
	sendMu sync.Mutex
	taken  []uint64
	closed []uint64
	kick   chan struct{}
}

func (b *ackBatcher) init(w *workerState) {
	b.w = w
	b.kick = make(chan struct{}, 1)
	go b.loop()
}

func (b *ackBatcher) add(id uint64, closed bool) {
	b.mu.Lock()
	if closed {
		b.closed = append(b.closed, id)
	} else {
		b.taken = append(b.taken, id)
	}
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

func (b *ackBatcher) loop() {
	for {
		select {
		case <-b.kick:
			b.flush()
		case <-b.w.gone:
			return
		}
	}
}

func (b *ackBatcher) flush() {
	b.sendMu.Lock()
	defer b.sendMu.Unlock()
	for {
		b.mu.Lock()
		taken, closed := b.taken, b.closed
		if len(taken) > ipc.MaxIDs {
			taken = taken[:ipc.MaxIDs]
		}
		if len(closed) > ipc.MaxIDs {
			closed = closed[:ipc.MaxIDs]
		}
		b.taken = b.taken[len(taken):]
		b.closed = b.closed[len(closed):]
		if len(b.taken) == 0 {
			b.taken = nil
		}
		if len(b.closed) == 0 {
			b.closed = nil
		}
		b.mu.Unlock()
		if len(taken) == 0 && len(closed) == 0 {
			return
		}
		b.w.send(&ipc.Msg{Type: ipc.Ack, IDs: taken, Closed: closed}, nil)
	}
}

// returned hands connections back at once: another worker is waiting for
// them.
func (b *ackBatcher) returned(ids []uint64) {
	for len(ids) > 0 {
		n := min(len(ids), ipc.MaxIDs)
		b.w.send(&ipc.Msg{Type: ipc.Ack, Returned: ids[:n]}, nil)
		ids = ids[n:]
	}
}
