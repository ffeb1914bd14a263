//go:build unix

package tcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/sockshare/sockshare/internal/ipc"
	"github.com/sockshare/sockshare/internal/sockfd"
	"github.com/sockshare/sockshare/policy"
)

// Sink delivers handed connections to one worker. The root package
// implements it over the worker's IPC channel.
type Sink interface {
	// SendConns sends the descriptors with their ids in one message. The
	// descriptors stay owned by the caller; SendConns must not close them.
	// An error means the worker cannot be reached.
	SendConns(ids []uint64, fds []int) error
}

// DispatcherConfig configures a Dispatcher.
type DispatcherConfig struct {
	// Picker chooses a worker for each connection. Required.
	Picker policy.Picker
	// ListenerID goes into the top 24 bits of every connection id the
	// Dispatcher hands out, so a process serving several Dispatchers can
	// route acknowledgements without a table.
	ListenerID uint32
	// Window is how many connections may be handed to one worker and not
	// yet taken by its Accept. Default DefaultWindow.
	Window int
	// MaxPending bounds the connections the master holds while every
	// window is full or no worker is there. When the bound is reached the
	// Dispatcher stops accepting and the kernel backlog holds the load.
	// Default DefaultMaxPending.
	MaxPending int
	// Logger receives reports of dropped connections and accept errors.
	// Nil means slog.Default().
	Logger *slog.Logger
}

// Defaults for DispatcherConfig.
const (
	DefaultWindow     = 64
	DefaultMaxPending = 1024
	acceptBatch       = 64
)

// Stats counts what a Dispatcher did. Every accepted connection ends up
// Taken by a worker, Dropped (closed and counted, at shutdown), or is still
// Pending or Inflight.
type Stats struct {
	Accepted     uint64 // connections accepted from the listener
	Handed       uint64 // handoffs sent to workers, re-dispatches included
	Taken        uint64 // connections a worker's Accept returned
	Returned     uint64 // connections a worker handed back unserved
	Redispatched uint64 // connections handed again after a worker died or handed them back
	Dropped      uint64 // connections closed unserved because the dispatcher closed
	Pending      int    // waiting for a worker's window
	Inflight     int    // handed, not yet taken
}

// MemberStats is one worker's share of a Dispatcher.
type MemberStats struct {
	Handed   uint64
	Taken    uint64
	Inflight int
	Active   int // taken and not yet closed; only counted when the picker tracks closes
}

type handoff struct {
	id uint64
	fd int
}

// Member is one worker's membership in a Dispatcher.
type Member struct {
	slot     int
	sink     Sink
	inflight map[uint64]int
	active   int
	handed   uint64
	taken    uint64
	draining bool
	gone     bool
}

// Dispatcher is the master side of rr and leastconn: it accepts on the
// listener and hands every connection to a worker picked by the policy. It
// holds each handed descriptor until the worker acknowledges it, so a
// connection whose worker dies or hands it back is handed to another.
type Dispatcher struct {
	cfg   DispatcherConfig
	addr  string           // for logs
	ln    *net.TCPListener // nil: Inject only
	lf    *os.File         // a duplicate of ln's descriptor, for raw accepts
	log   *slog.Logger
	track bool

	mu           sync.Mutex
	members      []*Member
	pending      []handoff // FIFO; returned connections go to the front
	nextID       uint64
	clientPicker policy.ClientPicker   // the picker, when it chooses by client address
	clients      map[uint64]netip.Addr // client of each connection not yet taken, for clientPicker
	cands        []policy.Candidate    // scratch for pickLocked, with candMem
	candMem      []*Member
	stats        Stats
	closed       bool

	room    chan struct{} // signalled when pending drops below the bound
	changed chan struct{} // signalled after every acknowledgement or removal
	stop    chan struct{}
	done    chan struct{} // accept loop ended
	stopMu  sync.Once
}

// NewDispatcher takes ownership of ln and starts accepting on it. With a
// nil ln the Dispatcher accepts nothing itself and hands only what Inject
// gives it (the master uses one so for the queue of a reuseport slot socket
// that leaves its group).
func NewDispatcher(ln *net.TCPListener, cfg DispatcherConfig) (*Dispatcher, error) {
	if cfg.Picker == nil {
		return nil, errors.New("tcp: dispatcher needs a picker")
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.Window > ipc.MaxFDs {
		cfg.Window = ipc.MaxFDs
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = DefaultMaxPending
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	var lf *os.File
	addr := "-"
	if ln != nil {
		var err error
		if lf, err = rawListenerFile(ln); err != nil {
			return nil, fmt.Errorf("tcp: dispatcher: %w", err)
		}
		addr = ln.Addr().String()
	}
	d := &Dispatcher{
		addr:    addr,
		cfg:     cfg,
		ln:      ln,
		lf:      lf,
		log:     log,
		track:   cfg.Picker.TracksActive(),
		room:    make(chan struct{}, 1),
		changed: make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	if cp, ok := cfg.Picker.(policy.ClientPicker); ok {
		d.clientPicker, d.clients = cp, map[uint64]netip.Addr{}
	}
	if ln == nil {
		close(d.done)
	} else {
		go d.acceptLoop()
	}
	return d, nil
}

// Addr is the listening address, nil without a listener.
func (d *Dispatcher) Addr() net.Addr {
	if d.ln == nil {
		return nil
	}
	return d.ln.Addr()
}

// Inject hands connections the caller accepted elsewhere, as if the
// Dispatcher had accepted them. It takes ownership of fds.
func (d *Dispatcher) Inject(fds []int) { d.enqueue(fds) }

// Window is the per-worker window in force.
func (d *Dispatcher) Window() int { return d.cfg.Window }

// TracksClose reports whether workers must report every close.
func (d *Dispatcher) TracksClose() bool { return d.track }

// Add makes a worker eligible for connections.
func (d *Dispatcher) Add(slot int, s Sink) *Member {
	m := &Member{slot: slot, sink: s, inflight: make(map[uint64]int)}
	d.mu.Lock()
	if d.closed {
		m.gone = true
		d.mu.Unlock()
		return m
	}
	d.members = append(d.members, m)
	sends := d.pumpLocked()
	d.mu.Unlock()
	d.flush(sends)
	return m
}

// Drain stops handing new connections to m. Connections already in its
// window stay there until it takes them, hands them back or dies.
func (d *Dispatcher) Drain(m *Member) {
	d.mu.Lock()
	m.draining = true
	d.mu.Unlock()
}

// Remove is called when m's worker is gone. Every connection in its window
// is handed to another worker.
func (d *Dispatcher) Remove(m *Member) {
	d.mu.Lock()
	sends := d.removeLocked(m)
	d.mu.Unlock()
	d.notify()
	d.flush(sends)
}

func (d *Dispatcher) notify() {
	select {
	case d.changed <- struct{}{}:
	default:
	}
}

// WaitIdle waits until no connection is pending or in a worker's window,
// or ctx ends. Call it after StopAccepting to let workers take what the
// master already accepted.
func (d *Dispatcher) WaitIdle(ctx context.Context) error {
	for {
		s := d.Stats()
		if s.Pending == 0 && s.Inflight == 0 {
			return nil
		}
		select {
		case <-d.changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (d *Dispatcher) removeLocked(m *Member) []send {
	if m.gone {
		return nil
	}
	m.gone = true
	for i, x := range d.members {
		if x == m {
			d.members = append(d.members[:i], d.members[i+1:]...)
			break
		}
	}
	if len(m.inflight) > 0 {
		back := make([]handoff, 0, len(m.inflight))
		for id, fd := range m.inflight {
			back = append(back, handoff{id, fd})
		}
		// Oldest first, so the re-dispatched keep their order.
		sortHandoffs(back)
		d.pending = append(back, d.pending...)
		d.stats.Redispatched += uint64(len(back))
		clear(m.inflight)
	}
	return d.pumpLocked()
}

// Ack applies a worker's acknowledgement: ids its Accept returned (taken),
// ids it hands back unserved (returned, re-dispatched), and ids it closed
// after use (closed, for leastconn). Ids m does not hold are ignored and
// counted as unknown in the returned value.
func (d *Dispatcher) Ack(m *Member, taken, returned, closed []uint64) (unknown int) {
	var toClose []int
	d.mu.Lock()
	for _, id := range taken {
		fd, ok := m.inflight[id]
		if !ok {
			unknown++
			continue
		}
		delete(m.inflight, id)
		delete(d.clients, id)
		toClose = append(toClose, fd)
		m.taken++
		d.stats.Taken++
		if d.track {
			m.active++
		}
	}
	for range closed {
		if m.active > 0 {
			m.active--
		}
	}
	var back []handoff
	for _, id := range returned {
		fd, ok := m.inflight[id]
		if !ok {
			unknown++
			continue
		}
		delete(m.inflight, id)
		back = append(back, handoff{id, fd})
	}
	if len(back) > 0 {
		d.stats.Returned += uint64(len(back))
		d.stats.Redispatched += uint64(len(back))
		d.pending = append(back, d.pending...)
	}
	sends := d.pumpLocked()
	d.mu.Unlock()
	d.notify()
	// The worker holds its own duplicate; the master's copy is done.
	for _, fd := range toClose {
		syscall.Close(fd)
	}
	d.flush(sends)
	return unknown
}

// MemberStats returns m's counters.
func (d *Dispatcher) MemberStats(m *Member) MemberStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return MemberStats{Handed: m.handed, Taken: m.taken, Inflight: len(m.inflight), Active: m.active}
}

// Stats returns the dispatcher's counters.
func (d *Dispatcher) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.stats
	s.Pending = len(d.pending)
	for _, m := range d.members {
		s.Inflight += len(m.inflight)
	}
	return s
}

// StopAccepting closes the listener and waits for the accept loop to end.
// Connections already accepted are still dispatched.
func (d *Dispatcher) StopAccepting() {
	d.stopMu.Do(func() {
		close(d.stop)
		if d.ln == nil {
			return
		}
		d.lf.Close() // ends a Read in progress on the duplicate
		<-d.done
		// Closing a listener resets what its backlog holds: those clients
		// completed their handshake and may have sent a request. Take them
		// first; they are dispatched like the rest.
		if fd, err := listenerFD(d.ln); err == nil {
			queued, _ := acceptQueued(fd, nil, 1<<16)
			if len(queued) > 0 {
				d.enqueue(queued)
			}
		}
		d.ln.Close()
	})
	<-d.done
}

// Close stops accepting and closes every connection no worker has taken:
// those pending and those in workers' windows. They are counted in
// Stats.Dropped and logged.
func (d *Dispatcher) Close() error {
	d.StopAccepting()
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	clear(d.clients)
	var fds []int
	for _, h := range d.pending {
		fds = append(fds, h.fd)
	}
	d.pending = nil
	for _, m := range d.members {
		for _, fd := range m.inflight {
			fds = append(fds, fd)
		}
		clear(m.inflight)
		m.gone = true
	}
	d.members = nil
	d.stats.Dropped += uint64(len(fds))
	d.mu.Unlock()
	for _, fd := range fds {
		syscall.Close(fd)
	}
	if len(fds) > 0 {
		d.log.Warn("sockshare: connections closed unserved at shutdown", "addr", d.addr, "count", len(fds))
	}
	return nil
}

type send struct {
	m   *Member
	ids []uint64
	fds []int
}

// pumpLocked hands pending connections to workers with room in their
// window and returns the messages to send once the lock is released.
func (d *Dispatcher) pumpLocked() []send {
	if len(d.pending) == 0 || len(d.members) == 0 {
		return nil
	}
	var sends []send
	for len(d.pending) > 0 {
		h := d.pending[0]
		m := d.pickLocked(h)
		if m == nil {
			break
		}
		d.pending = d.pending[1:]
		m.inflight[h.id] = h.fd
		m.handed++
		d.stats.Handed++
		k := -1
		for i := range sends {
			if sends[i].m == m {
				k = i
				break
			}
		}
		if k < 0 {
			sends = append(sends, send{m: m})
			k = len(sends) - 1
		}
		sends[k].ids = append(sends[k].ids, h.id)
		sends[k].fds = append(sends[k].fds, h.fd)
	}
	if len(d.pending) == 0 {
		d.pending = nil // let the backing array go
	}
	if len(d.pending) < d.cfg.MaxPending {
		select {
		case d.room <- struct{}{}:
		default:
		}
	}
	return sends
}

// pickLocked picks the worker for h, the next pending connection.
func (d *Dispatcher) pickLocked(h handoff) *Member {
	d.cands, d.candMem = d.cands[:0], d.candMem[:0]
	for _, m := range d.members {
		if m.draining || m.gone {
			continue
		}
		d.cands = append(d.cands, policy.Candidate{
			Slot:     m.slot,
			Inflight: len(m.inflight),
			Active:   m.active,
			Credit:   d.cfg.Window - len(m.inflight),
		})
		d.candMem = append(d.candMem, m)
	}
	var k int
	if client, ok := d.clients[h.id]; ok {
		k = d.clientPicker.PickClient(client, d.cands)
	} else {
		k = d.cfg.Picker.Pick(d.cands)
	}
	if k < 0 || k >= len(d.candMem) {
		return nil
	}
	return d.candMem[k]
}

// flush sends the handoffs outside the lock. A worker that cannot be
// reached is removed, and its connections go to the others.
func (d *Dispatcher) flush(sends []send) {
	for len(sends) > 0 {
		s := sends[0]
		sends = sends[1:]
		var err error
		for i := 0; i < len(s.ids) && err == nil; i += ipc.MaxFDs {
			j := min(i+ipc.MaxFDs, len(s.ids))
			err = s.m.sink.SendConns(s.ids[i:j], s.fds[i:j])
		}
		if err != nil {
			d.log.Warn("sockshare: handoff failed; re-dispatching", "addr", d.addr, "slot", s.m.slot, "err", err)
			d.mu.Lock()
			more := d.removeLocked(s.m)
			d.mu.Unlock()
			sends = append(sends, more...)
		}
	}
}

func (d *Dispatcher) enqueue(fds []int) {
	var clients []netip.Addr
	if d.clientPicker != nil {
		clients = make([]netip.Addr, len(fds))
		for i, fd := range fds {
			clients[i] = peerAddr(fd)
		}
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		for _, fd := range fds {
			syscall.Close(fd)
		}
		return
	}
	for i, fd := range fds {
		d.nextID++
		id := ipc.ConnID(d.cfg.ListenerID, d.nextID)
		d.pending = append(d.pending, handoff{id: id, fd: fd})
		if clients != nil && clients[i].IsValid() {
			d.clients[id] = clients[i]
		}
	}
	d.stats.Accepted += uint64(len(fds))
	sends := d.pumpLocked()
	d.mu.Unlock()
	d.flush(sends)
}

// waitRoom blocks while the pending queue is at its bound. It returns false
// when the dispatcher is stopping.
func (d *Dispatcher) waitRoom() (room int, ok bool) {
	for {
		d.mu.Lock()
		n := d.cfg.MaxPending - len(d.pending)
		d.mu.Unlock()
		if n > 0 {
			return n, true
		}
		select {
		case <-d.room:
		case <-d.stop:
			return 0, false
		}
	}
}

// rawListenerFile duplicates ln's descriptor into a non-blocking *os.File:
// a net.TCPListener's RawConn supports only Control, while an os.File's
// supports Read, which waits for readiness in the netpoller.
func rawListenerFile(ln *net.TCPListener) (*os.File, error) {
	fd, err := listenerFD(ln)
	if err != nil {
		return nil, err
	}
	nfd, err := sockfd.DupCloexec(fd)
	if err != nil {
		return nil, err
	}
	if err := syscall.SetNonblock(nfd, true); err != nil {
		syscall.Close(nfd)
		return nil, err
	}
	return os.NewFile(uintptr(nfd), "sockshare-accept"), nil
}

func (d *Dispatcher) acceptLoop() {
	defer close(d.done)
	rc, err := d.lf.SyscallConn()
	if err != nil {
		d.log.Error("sockshare: accept loop cannot start", "err", err)
		return
	}
	batch := make([]int, 0, acceptBatch)
	backoff := time.Duration(0)
	for {
		room, ok := d.waitRoom()
		if !ok {
			return
		}
		limit := min(room, acceptBatch)
		batch = batch[:0]
		var aerr error
		// Accept with the raw descriptor so accepted sockets are never
		// registered with the master's netpoller: the master only passes
		// them on. Drain up to a batch per wake-up.
		rerr := rc.Read(func(fd uintptr) bool {
			batch, aerr = acceptQueued(int(fd), batch, limit)
			// Nothing accepted and no error: wait for readiness.
			return len(batch) > 0 || aerr != nil
		})
		if len(batch) > 0 {
			d.enqueue(batch)
			backoff = 0
		}
		if rerr != nil {
			select {
			case <-d.stop:
			default:
				d.log.Error("sockshare: accept loop ended", "addr", d.addr, "err", rerr)
			}
			return
		}
		if aerr != nil {
			// EMFILE, ENFILE, ENOBUFS...: the connection stays in the
			// kernel backlog; back off as net/http does.
			if backoff == 0 {
				backoff = 5 * time.Millisecond
			} else if backoff < time.Second {
				backoff *= 2
			}
			d.log.Warn("sockshare: accept failed; retrying", "addr", d.addr, "err", fmt.Errorf("accept: %w", aerr), "retry_in", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-d.stop:
				t.Stop()
				return
			}
		}
	}
}
