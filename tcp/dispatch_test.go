//go:build linux

package tcp

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/sockshare/sockshare/internal/sockfd"
	"github.com/sockshare/sockshare/policy"
)

// inproc is a worker in the test process: a Sink that duplicates each
// descriptor, as SCM_RIGHTS would, into a HandoffListener, and an Acker
// that reports straight back to the dispatcher.
type inproc struct {
	d         *Dispatcher
	m         *Member
	hl        *HandoffListener
	mu        sync.Mutex
	dead      bool
	closed    int
	delivered sync.WaitGroup // deliveries in flight
	served    sync.WaitGroup // the serve loop and its connection handlers
}

func (w *inproc) SendConns(ids []uint64, fds []int) error {
	w.mu.Lock()
	dead := w.dead
	w.mu.Unlock()
	if dead {
		return errors.New("worker gone")
	}
	dups := make([]int, len(fds))
	for i, fd := range fds {
		n, err := sockfd.DupCloexec(fd)
		if err != nil {
			return err
		}
		dups[i] = n
	}
	w.delivered.Add(1)
	go func() { // as if over the socket: asynchronously
		defer w.delivered.Done()
		w.hl.Deliver(ids, dups)
	}()
	return nil
}

func (w *inproc) Taken(id uint64) { w.d.Ack(w.m, []uint64{id}, nil, nil) }
func (w *inproc) Returned(ids []uint64) {
	w.d.Ack(w.m, nil, ids, nil)
}
func (w *inproc) Closed(id uint64) {
	w.mu.Lock()
	w.closed++
	w.mu.Unlock()
	w.d.Ack(w.m, nil, nil, []uint64{id})
}
func (w *inproc) ListenerClosed() { w.d.Drain(w.m) }

func newDispatcher(t *testing.T, pick policy.Name, window, maxPending int) *Dispatcher {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDispatcher(ln.(*net.TCPListener), DispatcherConfig{Picker: pick.NewPicker(), ListenerID: 7, Window: window, MaxPending: maxPending})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// addWorker adds an in-process worker. When the test ends it closes the
// worker's listener and waits for its deliveries and for serve's handlers,
// so no descriptor of one test is still open, or closed late, in the next
// one: the tests that count /proc/self/fd count the whole process.
func addWorker(t *testing.T, d *Dispatcher, slot int) *inproc {
	w := &inproc{d: d}
	w.hl = NewHandoffListener(d.Addr(), d.Window(), d.TracksClose(), w)
	w.m = d.Add(slot, w)
	t.Cleanup(func() {
		w.delivered.Wait()
		w.hl.Close()
		w.served.Wait()
	})
	return w
}

// serve accepts on w, in a goroutine, and echoes one byte per connection,
// then closes it. A client reads the byte before the handler has closed its
// end, so the handlers are counted in w.served, which addWorker's cleanup
// waits for; the deadline bounds a handler whose client neither writes nor
// closes.
func serve(w *inproc) {
	w.served.Add(1)
	go func() {
		defer w.served.Done()
		for {
			c, err := w.hl.Accept()
			if err != nil {
				return
			}
			w.served.Add(1) // while the loop's own count holds Wait off
			go func() {
				defer w.served.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				b := make([]byte, 1)
				if _, err := io.ReadFull(c, b); err == nil {
					c.Write(b)
				}
			}()
		}
	}()
}

func ping(t *testing.T, addr string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte{'x'}); err != nil {
		return err
	}
	b := make([]byte, 1)
	_, err = io.ReadFull(c, b)
	return err
}

func fdCount(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip(err)
	}
	return len(ents)
}

// waitStats polls the dispatcher's counters until cond holds; the
// dispatcher offers no event for them.
func waitStats(t *testing.T, d *Dispatcher, what string, cond func(Stats) bool) Stats {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := d.Stats()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %+v", what, s)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestDispatchRoundRobinExact(t *testing.T) {
	d := newDispatcher(t, policy.RR, 8, 64)
	a, b := addWorker(t, d, 0), addWorker(t, d, 1)
	serve(a)
	serve(b)
	for i := range 200 {
		if err := ping(t, d.Addr().String()); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	sa, sb := d.MemberStats(a.m), d.MemberStats(b.m)
	if sa.Taken != 100 || sb.Taken != 100 {
		t.Fatalf("taken %d and %d; want 100 each", sa.Taken, sb.Taken)
	}
}

func TestDispatchNoFDLeak(t *testing.T) {
	d := newDispatcher(t, policy.RR, 16, 64)
	a, b := addWorker(t, d, 0), addWorker(t, d, 1)
	serve(a)
	serve(b)
	if err := ping(t, d.Addr().String()); err != nil {
		t.Fatal(err)
	}
	before := fdCount(t)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 250 {
				if err := ping(t, d.Addr().String()); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	waitStats(t, d, "no connection in flight", func(s Stats) bool { return s.Inflight == 0 && s.Pending == 0 })
	if after := fdCount(t); after-before > 2 || before-after > 2 {
		t.Fatalf("fds %d before, %d after 2000 handoffs", before, after)
	}
}

// A worker that dies with connections in its window: they go to the other.
func TestDispatchRemoveRedispatches(t *testing.T) {
	d := newDispatcher(t, policy.RR, 8, 64)
	stalled, live := addWorker(t, d, 0), addWorker(t, d, 1)
	serve(live)
	errs := make(chan error, 6)
	for range 6 {
		go func() { errs <- ping(t, d.Addr().String()) }()
	}
	waitStats(t, d, "the stalled worker's window to fill", func(Stats) bool { return d.MemberStats(stalled.m).Inflight == 3 })
	stalled.mu.Lock()
	stalled.dead = true
	stalled.mu.Unlock()
	d.Remove(stalled.m)
	for range 6 {
		if err := <-errs; err != nil {
			t.Fatalf("a connection in the dead worker's window failed: %v", err)
		}
	}
	if s := d.Stats(); s.Redispatched < 3 || s.Taken != 6 {
		t.Fatalf("stats %+v; want 3 re-dispatched, 6 taken", s)
	}
}

// Closing a listener hands its queue back: nothing is lost.
func TestDispatchListenerCloseReturns(t *testing.T) {
	d := newDispatcher(t, policy.RR, 8, 64)
	closing, live := addWorker(t, d, 0), addWorker(t, d, 1)
	serve(live)
	errs := make(chan error, 6)
	for range 6 {
		go func() { errs <- ping(t, d.Addr().String()) }()
	}
	waitStats(t, d, "the closing worker's window to fill", func(Stats) bool { return d.MemberStats(closing.m).Inflight == 3 })
	closing.hl.Close()
	for range 6 {
		if err := <-errs; err != nil {
			t.Fatalf("a returned connection failed: %v", err)
		}
	}
	if _, err := closing.hl.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v; want net.ErrClosed", err)
	}
	if s := d.Stats(); s.Returned != 3 {
		t.Fatalf("stats %+v; want 3 returned", s)
	}
}

// With every window full, the pending queue stops at its bound and the
// rest waits in the kernel backlog.
func TestDispatchBackpressure(t *testing.T) {
	d := newDispatcher(t, policy.RR, 2, 5)
	w := addWorker(t, d, 0) // never accepts
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 100 {
		c, err := net.Dial("tcp", d.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	s := waitStats(t, d, "the queue to fill", func(s Stats) bool { return s.Pending == 5 && s.Inflight == 2 })
	if s.Accepted > 5+2+acceptBatch {
		t.Fatalf("accepted %d with a stalled worker; the bound is %d", s.Accepted, 5+2+acceptBatch)
	}
	// Serving drains everything, kernel backlog included.
	serve(w)
	for _, c := range conns {
		c.Write([]byte{'x'})
	}
	for i, c := range conns {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			t.Fatalf("connection %d after the stall: %v", i, err)
		}
	}
}

// leastconn sends new connections to the worker with fewer open ones.
func TestDispatchLeastConn(t *testing.T) {
	d := newDispatcher(t, policy.LeastConn, 8, 64)
	busy, idle := addWorker(t, d, 0), addWorker(t, d, 1)
	// Three connections: ties rotate, so busy gets the 1st and 3rd, idle
	// the 2nd. busy keeps both open. Two, not one: a ping's close report
	// may lag the next ping, and idle must still have fewer open.
	for range 3 {
		c, err := net.Dial("tcp", d.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	for range 2 {
		kept, err := busy.hl.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer kept.Close()
	}
	c, err := idle.hl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c.Close() // idle now has 0 open, busy has 2
	waitStats(t, d, "the close report", func(Stats) bool { return d.MemberStats(idle.m).Active == 0 })
	serve(idle)
	for range 5 {
		if err := ping(t, d.Addr().String()); err != nil {
			t.Fatal(err)
		}
	}
	if n := d.MemberStats(idle.m).Taken; n != 6 {
		t.Fatalf("idle worker took %d; want 1 + 5", n)
	}
}

// Close drops and counts what no worker took; nothing leaks. The count is
// of the whole process, so it holds only because every earlier test waits,
// in addWorker's cleanup, for what its workers still hold.
func TestDispatchCloseCountsDropped(t *testing.T) {
	before := fdCount(t)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	d, err := NewDispatcher(ln.(*net.TCPListener), DispatcherConfig{Picker: policy.RR.NewPicker(), Window: 2, MaxPending: 5})
	if err != nil {
		t.Fatal(err)
	}
	w := addWorker(t, d, 0)
	var conns []net.Conn
	for range 10 {
		c, err := net.Dial("tcp", d.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	waitStats(t, d, "the queue to fill", func(s Stats) bool { return s.Pending == 5 && s.Inflight == 2 })
	d.Close()
	// The two handed connections may still be on their way to the listener
	// (SendConns delivers asynchronously); Close must find them queued.
	w.delivered.Wait()
	w.hl.Close()
	// The 3 still in the kernel's backlog are taken before the listener
	// closes (closing would reset them unseen) and count as dropped too.
	if s := d.Stats(); s.Dropped != 10 || s.Accepted != 10 {
		t.Fatalf("dropped %d of %d accepted; want 10 of 10 (5 pending + 2 in the window + 3 from the backlog)", s.Dropped, s.Accepted)
	}
	for _, c := range conns {
		c.Close()
	}
	if after := fdCount(t); after != before {
		t.Fatalf("fds %d before, %d after", before, after)
	}
}
