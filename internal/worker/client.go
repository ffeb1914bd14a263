//go:build unix

package worker

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
	"github.com/sockshare/sockshare/internal/kdispatch"
	"github.com/sockshare/sockshare/passfd"
	"github.com/sockshare/sockshare/policy"
	"github.com/sockshare/sockshare/tcp"
	"github.com/sockshare/sockshare/udp"
)

// self is this process's worker state, nil when it is not a worker.
var self *client

// markerErr is set when this process carries worker markers that cannot be
// used. It is not a worker then, and NewMaster and Listen return the error
// instead of starting a nested master or binding behind the master's back.
var markerErr error

func init() { self, markerErr = start() }

// client is the worker side of the IPC channel: the client of the
// master's IPC server, in a process the master started.
type client struct {
	id, slot  int
	masterPID int
	conn      *net.UnixConn
	seq       atomic.Uint32

	mu        sync.Mutex
	calls     map[uint32]chan listenReply
	listeners map[uint32]connSink        // by listener id: where handed connections go
	nth       map[string]map[uint32]bool // open listens by "network address"
	packets   []*packetListen            // open ListenPackets, watched for Close
	handler   func([]byte)
	goneOnce  sync.Once
	gone      chan struct{}

	acks ackBatcher
}

type listenReply struct {
	msg ipc.Msg
	fds []int
	hl  *tcp.HandoffListener // made by the reader for rr and leastconn
	la  *listenerAcker       // hl's
	err error
}

// startWorker reads and removes the worker markers. It returns nil, nil
// in a process that is not a worker, and an error wrapping ipc.ErrWorkerEnv
// when the markers are there but unusable (a malformed value, or fd that is
// not the master's socket): such a process must neither act as a master
// nor bind addresses the master does not know about. The library never
// prints or exits, so the error surfaces from NewMaster and Listen.
func start() (*client, error) {
	if os.Getenv(ipc.EnvExecShim) != "" {
		return nil, nil // the markers are for the program the shim runs
	}
	idStr, ok := os.LookupEnv(ipc.EnvWorkerID)
	vals := map[string]string{}
	for _, k := range ipc.Markers {
		vals[k] = os.Getenv(k)
		os.Unsetenv(k)
	}
	if !ok {
		return nil, nil
	}
	bad := func(what string, err error) (*client, error) {
		return nil, fmt.Errorf("%w: %s: %v", ipc.ErrWorkerEnv, what, err)
	}
	id, err := strconv.Atoi(idStr)
	if err != nil || id < 1 {
		return bad(ipc.EnvWorkerID+"="+strconv.Quote(idStr), errOr(err, "not a positive number"))
	}
	slot, err := strconv.Atoi(vals[ipc.EnvSlot])
	if err != nil || slot < 0 {
		return bad(ipc.EnvSlot+"="+strconv.Quote(vals[ipc.EnvSlot]), errOr(err, "negative"))
	}
	fd, err := strconv.Atoi(vals[ipc.EnvIPCFD])
	if err != nil || fd < 0 {
		return bad(ipc.EnvIPCFD+"="+strconv.Quote(vals[ipc.EnvIPCFD]), errOr(err, "negative"))
	}
	mpid, err := strconv.Atoi(vals[ipc.EnvMasterPID])
	if err != nil || mpid < 1 {
		return bad(ipc.EnvMasterPID+"="+strconv.Quote(vals[ipc.EnvMasterPID]), errOr(err, "not a positive number"))
	}
	f := os.NewFile(uintptr(fd), "sockshare-ipc")
	if f == nil {
		return bad(ipc.EnvIPCFD, errors.New("not a descriptor"))
	}
	conn, err := passfd.FileConn(f)
	if err != nil {
		return bad(fmt.Sprintf("IPC descriptor %d", fd), err)
	}
	w := &client{
		id: id, slot: slot, masterPID: mpid, conn: conn,
		calls:     map[uint32]chan listenReply{},
		listeners: map[uint32]connSink{},
		nth:       map[string]map[uint32]bool{},
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
	return w, nil
}

func errOr(err error, text string) error {
	if err != nil {
		return err
	}
	return errors.New(text)
}

func (w *client) send(m *ipc.Msg, fds []int) error {
	encErr, err := ipc.Send(w.conn, m, fds)
	if encErr != nil {
		return encErr
	}
	if err != nil {
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
func (w *client) masterLost() {
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

// connSink is a listener of this worker that the master hands connections
// to: *tcp.HandoffListener (rr, leastconn) or *tcp.SocketListener (shared,
// reuseport, for the connections of a slot socket that left its group).
type connSink interface {
	Deliver(ids []uint64, fds []int)
}

func (w *client) readLoop() {
	buf := make([]byte, ipc.MaxMessage+1)
	for {
		n, fds, err := passfd.Recv(w.conn, buf, ipc.MaxFDs)
		if errors.Is(err, passfd.ErrTruncated) && n > 0 {
			// The kernel dropped the fds (RLIMIT_NOFILE). The channel
			// itself is fine: answer what can be answered.
			if msg, derr := ipc.Decode(buf[:n]); derr == nil {
				switch msg.Type {
				case ipc.Conns:
					// The master still holds the connections and gives
					// them to another worker.
					w.acks.returned(msg.IDs)
					continue
				case ipc.ListenReply:
					w.onTruncatedListenReply(&msg, err)
					continue
				}
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
			l := w.listeners[ipc.ListenerOf(msg.IDs[0])]
			w.mu.Unlock()
			if l == nil {
				passfd.CloseAll(fds)
				w.acks.returned(msg.IDs)
				continue
			}
			l.Deliver(msg.IDs, fds)
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

// onTruncatedListenReply answers a Listen whose socket the kernel could not
// install (the worker is at RLIMIT_NOFILE): the Listen fails with EMFILE,
// the worker lives on, and the master is told this worker does not listen.
func (w *client) onTruncatedListenReply(msg *ipc.Msg, cause error) {
	if msg.Err == "" {
		w.send(&ipc.Msg{Type: ipc.ListenerClosed, Listener: msg.Listener}, nil)
	}
	w.mu.Lock()
	ch := w.calls[msg.Seq]
	delete(w.calls, msg.Seq)
	w.mu.Unlock()
	if ch != nil {
		ch <- listenReply{msg: *msg, err: fmt.Errorf("receive the master's socket: %w (%w)", syscall.EMFILE, cause)}
	}
}

func (w *client) onListenReply(msg *ipc.Msg, fds []int) {
	r := listenReply{msg: *msg, fds: fds}
	if msg.Err == "" && len(fds) == 0 && ipc.StreamNet(msg.Network) {
		// rr or leastconn: register the listener before the next message,
		// which may already carry connections for it.
		addr, err := resolveAddr(msg.Network, msg.Addr)
		if err != nil {
			r.err = err
		} else {
			r.la = &listenerAcker{w: w, id: msg.Listener}
			r.hl = tcp.NewHandoffListener(addr, int(msg.Window), msg.Flags&ipc.FlagTrackClose != 0, r.la)
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
		} else if msg.Err == "" {
			w.send(&ipc.Msg{Type: ipc.ListenerClosed, Listener: msg.Listener}, nil)
		}
		return
	}
	ch <- r
}

func resolveAddr(network, addr string) (net.Addr, error) {
	if ipc.PacketNet(network) {
		return net.ResolveUDPAddr(network, addr)
	}
	return net.ResolveTCPAddr(network, addr)
}

// call sends a Listen request and waits for the reply.
func (w *client) call(ctx context.Context, req *ipc.Msg) (listenReply, error) {
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
			} else if r.err == nil && r.msg.Err == "" {
				w.send(&ipc.Msg{Type: ipc.ListenerClosed, Listener: r.msg.Listener}, nil)
			}
		}
		return listenReply{}, ctx.Err()
	}
}

// takeNth picks the n-th Listen of network and address that this call is:
// the lowest index no open listener of this worker holds. Sharing is keyed
// by it (as in Node), so a listener closed and opened again rejoins the same
// group instead of binding a second one. Closed datagram sockets are found
// here too (see pollPackets).
func (w *client) takeNth(network, address string) uint32 {
	w.reapPackets()
	w.mu.Lock()
	defer w.mu.Unlock()
	k := network + " " + address
	used := w.nth[k]
	if used == nil {
		used = map[uint32]bool{}
		w.nth[k] = used
	}
	n := uint32(0)
	for used[n] {
		n++
	}
	used[n] = true
	return n
}

// releaseNth frees an index taken by takeNth.
func (w *client) releaseNth(network, address string, n uint32) {
	w.mu.Lock()
	delete(w.nth[network+" "+address], n)
	w.mu.Unlock()
}

func (w *client) request(ctx context.Context, network, address, pol string) (listenReply, uint32, error) {
	if pol != "" {
		p, err := policy.Parse(pol)
		if err != nil {
			return listenReply{}, 0, wrapListenErr(network, address, pol, err)
		}
		pol = string(p)
	}
	nth := w.takeNth(network, address)
	req := &ipc.Msg{Type: ipc.Listen, Network: network, Addr: address, Policy: pol, Nth: nth}
	r, err := w.call(ctx, req)
	if err == nil && r.msg.Err != "" {
		err = &ipc.RemoteError{Msg: r.msg.Err, Errno: syscall.Errno(r.msg.Errno), Flags: r.msg.Flags & (ipc.FlagPolicyConflict | ipc.FlagUnsupported)}
	}
	if err != nil {
		w.releaseNth(network, address, nth)
		if r.msg.Policy != "" {
			pol = r.msg.Policy
		}
		return r, 0, wrapListenErr(network, address, pol, err)
	}
	return r, nth, nil
}

func (w *client) listen(ctx context.Context, network, address, pol string) (net.Listener, error) {
	r, nth, err := w.request(ctx, network, address, pol)
	if err != nil {
		return nil, err
	}
	if r.hl != nil {
		r.la.onClose = func() { w.releaseNth(network, address, nth) }
		return r.hl, nil
	}
	fail := func(err error) (net.Listener, error) {
		w.releaseNth(network, address, nth)
		w.send(&ipc.Msg{Type: ipc.ListenerClosed, Listener: r.msg.Listener}, nil)
		return nil, wrapListenErr(network, address, r.msg.Policy, err)
	}
	if len(r.fds) < 1 || len(r.fds) > 2 {
		passfd.CloseAll(r.fds)
		return fail(errors.New("master sent no socket"))
	}
	var counts *kdispatch.ConnCounts
	if len(r.fds) == 2 {
		// Kernel leastconn: the second descriptor is the map of open
		// connections per slot that the program reads.
		counts, err = kdispatch.MapConnCounts(r.fds[1])
		passfd.CloseAll(r.fds[1:])
		if err != nil {
			passfd.CloseAll(r.fds[:1])
			return fail(err)
		}
	}
	ln, err := tcp.FileListener(r.fds[0])
	if err != nil {
		if counts != nil {
			counts.Close()
		}
		return fail(err)
	}
	la := &listenerAcker{w: w, id: r.msg.Listener, onClose: func() { w.releaseNth(network, address, nth) }}
	sl := tcp.NewSocketListener(ln.(*net.TCPListener), int(r.msg.Window), la)
	w.mu.Lock()
	w.listeners[r.msg.Listener] = sl
	w.mu.Unlock()
	if counts != nil {
		return newCountingListener(sl, counts, w.slot), nil
	}
	return sl, nil
}

func (w *client) listenPacket(ctx context.Context, network, address, pol string) (net.PacketConn, error) {
	r, nth, err := w.request(ctx, network, address, pol)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (net.PacketConn, error) {
		w.releaseNth(network, address, nth)
		w.send(&ipc.Msg{Type: ipc.ListenerClosed, Listener: r.msg.Listener}, nil)
		return nil, wrapListenErr(network, address, r.msg.Policy, err)
	}
	if len(r.fds) != 1 {
		passfd.CloseAll(r.fds)
		if r.hl != nil {
			r.hl.Close()
		}
		return fail(errors.New("master sent no socket"))
	}
	pc, err := udp.FilePacketConn(r.fds[0])
	if err != nil {
		return fail(err)
	}
	w.watchPacket(&packetListen{pc: pc, id: r.msg.Listener, network: network, address: address, nth: nth})
	return pc, nil
}

// packetListen is an open ListenPacket. It is a plain *net.UDPConn, whose
// Close the package cannot hook, so the worker notices the Close by
// polling (see pollPackets) and at its next ListenPacket.
type packetListen struct {
	pc               *net.UDPConn
	id               uint32
	network, address string
	nth              uint32
}

func (w *client) watchPacket(p *packetListen) {
	w.mu.Lock()
	first := len(w.packets) == 0
	w.packets = append(w.packets, p)
	w.mu.Unlock()
	if first {
		go w.pollPackets()
	}
}

// pollPackets reaps closed datagram sockets until none is left open.
func (w *client) pollPackets() {
	t := time.NewTicker(PacketPollInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-w.gone:
			return
		}
		if w.reapPackets() == 0 {
			return // watchPacket starts a new poller for the next one
		}
	}
}

// reapPackets tells the master about every datagram socket closed since the
// last call and returns how many are still open.
func (w *client) reapPackets() int {
	w.mu.Lock()
	var closed []*packetListen
	open := w.packets[:0]
	for _, p := range w.packets {
		if isClosedConn(p.pc) {
			closed = append(closed, p)
			delete(w.nth[p.network+" "+p.address], p.nth)
		} else {
			open = append(open, p)
		}
	}
	clear(w.packets[len(open):])
	w.packets = open
	n := len(open)
	w.mu.Unlock()
	for _, p := range closed {
		w.send(&ipc.Msg{Type: ipc.ListenerClosed, Listener: p.id}, nil)
	}
	return n
}

// isClosedConn reports whether c was closed: a closed conn's RawConn
// refuses Control.
func isClosedConn(c syscall.Conn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return true
	}
	return rc.Control(func(uintptr) {}) != nil
}

func (w *client) ready() error {
	return w.send(&ipc.Msg{Type: ipc.Ready}, nil)
}

func (w *client) sendUser(p []byte) error {
	return w.send(&ipc.Msg{Type: ipc.User, Payload: p}, nil)
}

func (w *client) setHandler(h func([]byte)) {
	w.mu.Lock()
	w.handler = h
	w.mu.Unlock()
}

// listenerAcker is one listener's tcp.Acker.
type listenerAcker struct {
	w       *client
	id      uint32
	onClose func() // releases the listener's n-th index
}

func (a *listenerAcker) Taken(id uint64)       { a.w.acks.add(id, false) }
func (a *listenerAcker) Closed(id uint64)      { a.w.acks.add(id, true) }
func (a *listenerAcker) Returned(ids []uint64) { a.w.acks.returned(ids) }
func (a *listenerAcker) ListenerClosed() {
	a.w.mu.Lock()
	delete(a.w.listeners, a.id)
	a.w.mu.Unlock()
	if a.onClose != nil {
		a.onClose()
	}
	// Pending takes first, so the master's counts are right, then stop.
	a.w.acks.flush()
	a.w.send(&ipc.Msg{Type: ipc.ListenerClosed, Listener: a.id}, nil)
}

// ackBatcher coalesces Taken and Closed acknowledgements: one goroutine
// sends whatever accumulated while the previous message was being sent, so
// under load one message carries many ids and idle latency stays one send.
type ackBatcher struct {
	w      *client
	mu     sync.Mutex
	sendMu sync.Mutex
	taken  []uint64
	closed []uint64
	kick   chan struct{}
}

func (b *ackBatcher) init(w *client) {
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

// IPCForTest returns this worker's end of the IPC socketpair, or nil
// outside a worker, for tests that write malformed messages on it.
func IPCForTest() *net.UnixConn {
	if self == nil {
		return nil
	}
	return self.conn
}
