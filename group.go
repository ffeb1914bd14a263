//go:build unix

package sockshare

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"

	"github.com/sockshare/sockshare/internal/ipc"
	"github.com/sockshare/sockshare/internal/kdispatch"
	"github.com/sockshare/sockshare/internal/sockfd"
	"github.com/sockshare/sockshare/policy"
	"github.com/sockshare/sockshare/tcp"
	"github.com/sockshare/sockshare/udp"
	"golang.org/x/sys/unix"
)

// groupKey identifies one shared address: every worker's n-th open Listen
// of the same network and address string shares one group, as in Node.js.
type groupKey struct {
	network string
	addr    string
	nth     uint32
}

// slotSockets is the master side of the strategies where workers hold a
// socket: the same descriptor for every slot (shared) or one per slot
// (reuseport). The descriptors stay owned by it.
type slotSockets interface {
	FD(slot int) (int, error)
	Close() error
}

// sharedSocket serves one held socket to every slot: the shared policy.
type sharedSocket struct{ *sockfd.Held }

func (s sharedSocket) FD(int) (int, error) { return s.Held.FD() }

// group is one address served under one policy, and who uses it. The
// master opens it for the first worker that listens on its key, and closes
// it as soon as no worker listens on it and no slot whose crashed worker is
// being restarted will come back to it (DESIGN invariant 7): new
// connections are then refused and the address can be bound again. Under
// reuseport, a slot that no longer uses the group leaves it the same way,
// so the kernel stops giving it connections; those already queued on its
// socket are handed to the other workers.
type group struct {
	id       uint32
	key      groupKey
	policy   policy.Name
	fellBack bool
	addr     net.Addr
	sockets  slotSockets        // shared, reuseport, kernel dispatch
	disp     *tcp.Dispatcher    // rr, leastconn; reuseport and kernel TCP: hands over a leaving slot's queue
	kernel   *kdispatch.Sockets // under kernel dispatch (also in sockets)
	pinned   bool               // from Config.Sockets: open until the master stops
	file     *os.File           // Socket.File to serve instead of binding, while opening

	announced chan struct{} // closed once the opener has reported the group (fallback)
	opMu      sync.Mutex    // serialises sending a slot's socket and releasing it

	// Guarded by Master.mu.
	members  map[*workerProc]bool // workers listening on it
	reserved map[int]bool         // slots whose crashed worker is to restart
	closed   bool
}

func (g *group) close() {
	if g.disp != nil {
		g.disp.Close()
	}
	if g.sockets != nil {
		g.sockets.Close()
	}
}

// slotInUseLocked reports whether a worker of slot listens on g, or will
// again after its restart. Call with Master.mu held.
func (g *group) slotInUseLocked(slot int) bool {
	return g.reserved[slot] || g.slotListensLocked(slot)
}

// slotListensLocked reports whether a worker of slot listens on g. Call
// with Master.mu held.
func (g *group) slotListensLocked(slot int) bool {
	for w := range g.members {
		if w.slot == slot {
			return true
		}
	}
	return false
}

// dispatchLabel says who chooses the worker of g's connections.
func (g *group) dispatchLabel() string {
	switch {
	case g.kernel != nil:
		return DispatchKernel
	case g.policy.Dispatches() && g.sockets == nil:
		return DispatchMaster
	}
	return ""
}

// serveListen answers a worker's Listen: find or open the group, make the
// worker a member, reply. Runs on the worker's reader goroutine.
func (m *Master) serveListen(w *workerProc, req *ipc.Msg) {
	g, opened, fallback, pol, err := m.groupFor(w, req)
	if err != nil {
		m.listenFailed(w, req, pol, err)
		return
	}
	if opened {
		// Before any listening event of this group, whichever worker's.
		if fallback != nil {
			m.emit(*fallback)
		}
		close(g.announced)
	} else {
		<-g.announced
	}
	if err := m.attach(w, g, req); err != nil {
		m.leaveGroup(w, g, false)
		return
	}
	w.setState(StateListening)
	m.emit(Event{Type: EventListening, WorkerID: w.id, Slot: w.slot, PID: w.pid, Network: req.Network, Addr: g.addr.String(), Policy: g.policy})
	// Readiness is implied by the first Listen served.
	w.markReady()
}

// listenFailed sends the worker its Listen error and reports it.
func (m *Master) listenFailed(w *workerProc, req *ipc.Msg, pol policy.Name, err error) {
	reply := ipc.Msg{Type: ipc.ListenReply, Seq: req.Seq, Network: req.Network, Policy: string(pol)}
	// The worker's error names the network, address and policy itself:
	// send the cause ("bind: address already in use").
	cause := err
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		cause = oe.Err
	}
	reply.Err = cause.Error()
	var errno syscall.Errno
	if errors.As(err, &errno) {
		reply.Errno = uint32(errno)
	}
	reply.Flags = ipc.ErrorFlags(err)
	w.send(&reply, nil)
	// Info, not Warn: the error is the worker's Listen result and an
	// EventListenError; the program decides whether it is a problem.
	m.log.Info("sockshare: listen failed", "worker", w.id, "network", req.Network, "addr", req.Addr, "err", err)
	remote := &ipc.RemoteError{Msg: reply.Err, Errno: errno, Flags: reply.Flags}
	m.mu.Lock()
	if m.firstListenErr == nil {
		m.firstListenErr = &ListenError{WorkerID: w.id, Network: req.Network, Addr: req.Addr, Err: remote}
		m.notifyLocked()
	}
	m.mu.Unlock()
	m.emit(Event{Type: EventListenError, WorkerID: w.id, Slot: w.slot, PID: w.pid, Network: req.Network, Addr: req.Addr, Err: remote})
}

// attach sends the worker its listener: the slot's socket, or the
// dispatcher's parameters, and makes it eligible for handoffs.
func (m *Master) attach(w *workerProc, g *group, req *ipc.Msg) error {
	reply := ipc.Msg{Type: ipc.ListenReply, Seq: req.Seq, Network: req.Network, Listener: g.id, Policy: string(g.policy), Addr: g.addr.String()}
	if g.fellBack {
		reply.Flags |= ipc.FlagFallback
	}
	if g.disp != nil {
		reply.Window = uint32(g.disp.Window())
		if g.disp.TracksClose() {
			reply.Flags |= ipc.FlagTrackClose
		}
	}
	g.opMu.Lock()
	defer g.opMu.Unlock()
	var fds []int
	if g.sockets != nil {
		fd, err := g.sockets.FD(w.slot)
		if err != nil {
			m.listenFailed(w, req, g.policy, err)
			return err
		}
		reply.NumFDs = 1
		fds = []int{fd}
		if cfd := g.kernel.CountsFD(); cfd >= 0 {
			// Kernel leastconn: the worker counts its open connections
			// where the program reads them.
			reply.NumFDs = 2
			fds = append(fds, cfd)
		}
	}
	// Reply first, so the worker knows the listener before the first
	// connection arrives; then make it eligible.
	if err := w.send(&reply, fds); err != nil {
		return err
	}
	if g.kernel != nil {
		if c := g.kernel.Chosen(); w.slot < len(c) {
			w.mu.Lock()
			w.chosenBase[g.id] = c[w.slot]
			w.mu.Unlock()
		}
		if err := g.kernel.SetLive(w.slot, true); err != nil {
			m.log.Error("sockshare: kernel dispatch: cannot make the slot live", "addr", g.addr.String(), "slot", w.slot, "err", err)
		}
	}
	if g.disp != nil {
		mem := g.disp.Add(w.slot, w)
		w.mu.Lock()
		old := w.joined[g.id]
		w.joined[g.id] = joined{g, mem}
		gone := w.state == StateExited
		w.mu.Unlock()
		if old.mem != nil {
			// The worker listened on this group again (after closing it).
			g.disp.Remove(old.mem)
		}
		if gone {
			g.disp.Remove(mem)
		}
	}
	return nil
}

// groupFor finds or opens the group for a Listen request and makes w a
// member of it, so that the group cannot close under the Listen. Bind
// errors are returned, not remembered: a later Listen tries again.
func (m *Master) groupFor(w *workerProc, req *ipc.Msg) (g *group, opened bool, fallback *Event, pol policy.Name, err error) {
	pol, asked, fellBack, err := m.policyFor(req.Network, req.Policy)
	if err != nil {
		return nil, false, nil, pol, err
	}
	key := groupKey{network: req.Network, addr: req.Addr, nth: req.Nth}
	m.mu.Lock()
	defer m.mu.Unlock()
	g, opened, err = m.openGroupLocked(key, pol, fellBack, w.slot, nil)
	if err != nil {
		return nil, false, nil, pol, err
	}
	m.joinLocked(w, g)
	if opened && fellBack {
		// Said once per address, not once per worker.
		m.log.Warn("sockshare: policy does not apply to datagram sockets here; using "+string(pol), "policy", asked, "network", req.Network, "addr", g.addr.String())
		fallback = &Event{Type: EventFallback, WorkerID: w.id, Slot: w.slot, PID: w.pid, Network: req.Network, Addr: g.addr.String(), Policy: pol,
			Err: fmt.Errorf("policy %q does not apply to %s; using %q", asked, req.Network, pol)}
	}
	return g, opened, fallback, pol, nil
}

// policyFor returns the policy network is served under when asked (the
// master's when empty) is asked for, and whether that is a fallback:
// datagram sockets have no accept (see policy.Name.ForPacket), except that
// the kernel applies sticky to them.
func (m *Master) policyFor(network, asked string) (pol, requested policy.Name, fellBack bool, err error) {
	pol = m.pol
	if asked != "" {
		if pol, err = policy.Parse(asked); err != nil {
			return "", "", false, err
		}
	}
	requested = pol
	switch {
	case ipc.StreamNet(network):
	case ipc.PacketNet(network):
		if _, kernel := m.kernelMode(pol); !kernel || pol != policy.Sticky {
			pol, fellBack = pol.ForPacket()
		}
	default:
		return pol, requested, false, fmt.Errorf("%w %q (want tcp, tcp4, tcp6, udp, udp4 or udp6)", ErrNetwork, network)
	}
	return pol, requested, fellBack, nil
}

// openGroupLocked returns the group of key, opening it under pol, with
// slot's socket bound first, if there is none. It is the one way groups
// come to be, whoever asks (a worker's Listen here; a master that opens
// addresses before any worker asks could call it too). The group closes
// when it has no member and no reserved slot (see settle), so a caller
// joins it or reserves a slot before releasing m.mu. Call with m.mu held.
func (m *Master) openGroupLocked(key groupKey, pol policy.Name, fellBack bool, slot int, file *os.File) (g *group, opened bool, err error) {
	if m.stopping {
		return nil, false, errStopping
	}
	if g := m.groups[key]; g != nil {
		if g.policy != pol {
			return nil, false, fmt.Errorf("%w: %s %s is served under %q, not %q", ErrPolicyConflict, key.network, key.addr, g.policy, pol)
		}
		return g, false, nil
	}
	m.nextGroup++
	g = &group{id: m.nextGroup, key: key, policy: pol, fellBack: fellBack, file: file,
		announced: make(chan struct{}), members: map[*workerProc]bool{}, reserved: map[int]bool{}}
	if ipc.StreamNet(key.network) {
		err = m.openStream(g, key.network, key.addr, slot)
	} else {
		err = m.openPacket(g, key.network, key.addr, slot)
	}
	g.file = nil // duplicated if used; the caller's
	if err != nil {
		return nil, false, err
	}
	m.groups[key] = g
	m.groupByID[g.id] = g
	if ipc.PacketNet(key.network) && m.cfg.UDPSteering && pol != policy.ReusePort {
		m.log.Warn("sockshare: UDP steering needs the reuseport policy; not applied", "policy", pol, "addr", g.addr.String())
	}
	return g, true, nil
}

func (m *Master) joinLocked(w *workerProc, g *group) {
	g.members[w] = true
	delete(g.reserved, w.slot)
	w.groups[g.id] = g
}

// leaveGroup ends w's membership of g. With reserve, w's slot keeps its
// place because a replacement is on its way (a crash with a restart
// scheduled). Then g closes if nobody uses it, or, under reuseport, w's
// slot leaves it if no worker of the slot still listens.
func (m *Master) leaveGroup(w *workerProc, g *group, reserve bool) {
	m.mu.Lock()
	if !g.members[w] {
		m.mu.Unlock()
		return
	}
	delete(g.members, w)
	delete(w.groups, g.id)
	if reserve && !g.closed {
		g.reserved[w.slot] = true
	}
	m.mu.Unlock()
	m.settle(g, w.slot)
}

// unreserveSlot drops slot's reservations: nothing will come back to them
// (the slot was given up, or left empty on purpose).
func (m *Master) unreserveSlot(slot int) {
	m.mu.Lock()
	var gs []*group
	for _, g := range m.groups {
		if g.reserved[slot] {
			delete(g.reserved, slot)
			gs = append(gs, g)
		}
	}
	m.mu.Unlock()
	for _, g := range gs {
		m.settle(g, slot)
	}
}

// settle closes g if nobody uses it any more, or releases slot's socket of
// a reuseport group that the slot no longer uses.
func (m *Master) settle(g *group, slot int) {
	m.mu.Lock()
	if g.closed {
		m.mu.Unlock()
		return
	}
	if len(g.members) == 0 && len(g.reserved) == 0 && !g.pinned && !m.stopping {
		g.closed = true
		delete(m.groups, g.key)
		delete(m.groupByID, g.id)
		m.mu.Unlock()
		m.log.Info("sockshare: no worker listens; closing", "network", g.key.network, "addr", g.addr.String())
		g.close()
		return
	}
	perSlot := g.policy == policy.ReusePort || g.kernel != nil
	release := perSlot && !m.stopping && !g.slotInUseLocked(slot)
	unlive := g.kernel != nil && !g.slotListensLocked(slot)
	m.mu.Unlock()
	if unlive {
		// No new connections for a slot nobody accepts on; a restarting
		// slot's queue waits for the replacement.
		g.opMu.Lock()
		m.mu.Lock()
		unlive = !g.closed && !g.slotListensLocked(slot)
		m.mu.Unlock()
		if unlive {
			if err := g.kernel.SetLive(slot, false); err != nil {
				m.log.Error("sockshare: kernel dispatch: cannot take the slot out", "addr", g.addr.String(), "slot", slot, "err", err)
			}
		}
		g.opMu.Unlock()
	}
	if release {
		m.releaseSlot(g, slot)
	}
}

// releaseSlot takes slot's socket out of a reuseport group. TCP connections
// queued on it go to the group's other workers.
func (m *Master) releaseSlot(g *group, slot int) {
	g.opMu.Lock()
	defer g.opMu.Unlock()
	m.mu.Lock()
	skip := g.closed || g.slotInUseLocked(slot)
	m.mu.Unlock()
	if skip {
		return
	}
	var err error
	switch s := g.sockets.(type) {
	case *tcp.ReusePortGroup:
		var queued []int
		queued, err = s.Release(slot)
		if len(queued) > 0 {
			m.log.Info("sockshare: handing a leaving slot's queued connections to the others", "addr", g.addr.String(), "slot", slot, "count", len(queued))
			g.disp.Inject(queued)
		}
	case *udp.ReusePortGroup:
		err = s.Release(slot)
	case *kdispatch.Sockets:
		// The slot is not live: nothing new reaches its socket, which
		// stays in the group (the program's slot count is fixed).
		var queued []int
		queued, err = s.Drain(slot)
		if len(queued) > 0 {
			m.log.Info("sockshare: handing a leaving slot's queued connections to the others", "addr", g.addr.String(), "slot", slot, "count", len(queued))
			g.disp.Inject(queued)
		}
	}
	if err != nil {
		m.log.Warn("sockshare: release slot socket", "addr", g.addr.String(), "slot", slot, "err", err)
	}
}

func (m *Master) openStream(g *group, network, address string, slot int) error {
	if _, err := net.ResolveTCPAddr(network, address); err != nil {
		return err
	}
	ctx := context.Background()
	var ln *net.TCPListener // the dispatcher's; nil for reuseport's and the kernel's
	mode, kernel := m.kernelMode(g.policy)
	if g.file != nil && kernel {
		return errFileUnsupported
	}
	switch {
	case g.policy == policy.ReusePort && g.file != nil:
		l, err := fileListener(g.file)
		if err != nil {
			return err
		}
		if err := checkReusePort(l); err != nil {
			l.Close()
			return err
		}
		rp, err := tcp.AdoptReusePortSlot(l, slot)
		if err != nil {
			return err
		}
		g.sockets, g.addr = rp, rp.Addr()
	case kernel:
		k, err := kdispatch.OpenSockets(network, address, m.activeLocked(), mode)
		if err != nil {
			return err
		}
		g.kernel, g.sockets, g.addr = k, k, k.Addr()
	case g.policy == policy.ReusePort:
		rp, err := tcp.OpenReusePortSlot(ctx, network, address, slot)
		if err != nil {
			return err
		}
		g.sockets, g.addr = rp, rp.Addr()
	case g.policy == policy.Shared && g.file != nil:
		l, err := fileListener(g.file)
		if err != nil {
			return err
		}
		h, err := sockfd.Hold(l, l.Addr())
		if err != nil {
			return err
		}
		g.sockets, g.addr = sharedSocket{h}, h.Addr()
		return nil
	case g.policy == policy.Shared:
		h, err := sockfd.Listen(ctx, network, address)
		if err != nil {
			return err
		}
		g.sockets, g.addr = sharedSocket{h}, h.Addr()
		return nil
	case g.file != nil:
		l, err := fileListener(g.file)
		if err != nil {
			return err
		}
		ln = l
		g.addr = ln.Addr()
	default:
		l, err := (&net.ListenConfig{}).Listen(ctx, network, address)
		if err != nil {
			return err
		}
		ln = l.(*net.TCPListener)
		g.addr = ln.Addr()
	}
	picker := g.policy.NewPicker()
	if picker == nil || g.sockets != nil {
		picker = policy.NewRoundRobin() // a leaving slot's queue
	}
	d, err := tcp.NewDispatcher(ln, tcp.DispatcherConfig{
		Picker:     picker,
		ListenerID: g.id,
		Window:     m.cfg.Window,
		MaxPending: m.cfg.MaxPending,
		Logger:     m.log,
	})
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		if g.sockets != nil {
			g.sockets.Close()
		}
		return err
	}
	g.disp = d
	return nil
}

// openPacket binds a datagram group: one socket for shared, one per slot
// for reuseport (with optional cBPF steering). The master holds the
// sockets outside its netpoller: it never reads them, and datagrams must
// not wake it (see package udp).
func (m *Master) openPacket(g *group, network, address string, slot int) error {
	if _, err := net.ResolveUDPAddr(network, address); err != nil {
		return err
	}
	ctx := context.Background()
	if g.file != nil {
		if _, kernel := m.kernelMode(g.policy); kernel {
			return errFileUnsupported
		}
		pc, err := net.FilePacketConn(g.file)
		if err != nil {
			return err
		}
		uc, ok := pc.(*net.UDPConn)
		if !ok {
			pc.Close()
			return fmt.Errorf("the inherited socket is a %T, not a UDP socket", pc)
		}
		if g.policy == policy.ReusePort {
			if err := checkReusePort(uc); err != nil {
				uc.Close()
				return err
			}
			rp, err := udp.AdoptReusePortSlot(uc, slot, m.cfg.UDPSteering)
			if err != nil {
				return err
			}
			g.sockets, g.addr = rp, rp.Addr()
			return nil
		}
		h, err := sockfd.Hold(uc, uc.LocalAddr())
		if err != nil {
			return err
		}
		g.sockets, g.addr = sharedSocket{h}, h.Addr()
		return nil
	}
	if mode, kernel := m.kernelMode(g.policy); kernel {
		k, err := kdispatch.OpenSockets(network, address, m.activeLocked(), mode)
		if err != nil {
			return err
		}
		g.kernel, g.sockets, g.addr = k, k, k.Addr()
		return nil
	}
	if g.policy == policy.ReusePort {
		rp, err := udp.OpenReusePortSlot(ctx, network, address, slot, m.cfg.UDPSteering)
		if err != nil {
			return err
		}
		g.sockets, g.addr = rp, rp.Addr()
		return nil
	}
	h, err := sockfd.ListenPacket(ctx, network, address)
	if err != nil {
		return err
	}
	g.sockets, g.addr = sharedSocket{h}, h.Addr()
	return nil
}

// errFileUnsupported is returned for a Socket.File under a policy that
// needs sockets of its own making.
var errFileUnsupported = fmt.Errorf("an inherited socket (Socket.File) cannot join a kernel dispatch group, whose sockets the master creates itself: %w", errors.ErrUnsupported)

// checkReusePort makes sure an inherited socket has SO_REUSEPORT, so that
// the other slots' sockets can bind beside it under reuseport.
func checkReusePort(c syscall.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var on int
	var oerr error
	if err := rc.Control(func(fd uintptr) { on, oerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT) }); err != nil {
		return err
	}
	if oerr != nil {
		return fmt.Errorf("the inherited socket: SO_REUSEPORT: %w", oerr)
	}
	if on == 0 {
		return errors.New("the inherited socket has no SO_REUSEPORT, so the reuseport policy cannot bind the other slots' sockets beside it (systemd: ReusePort=yes in the .socket unit)")
	}
	return nil
}

// fileListener makes a *net.TCPListener of an inherited listening socket
// (a duplicate: f stays the caller's).
func fileListener(f *os.File) (*net.TCPListener, error) {
	l, err := net.FileListener(f)
	if err != nil {
		return nil, err
	}
	tl, ok := l.(*net.TCPListener)
	if !ok {
		l.Close()
		return nil, fmt.Errorf("the inherited socket is a %T, not a TCP listener", l)
	}
	return tl, nil
}

// kernelMode says whether groups of policy p are dispatched by the kernel
// here, and with which program.
func (m *Master) kernelMode(p policy.Name) (kdispatch.Mode, bool) {
	if m.dispatch != DispatchKernel {
		return 0, false
	}
	switch p {
	case policy.RR:
		return kdispatch.RoundRobin, true
	case policy.Sticky:
		return kdispatch.Sticky, true
	case policy.LeastConn:
		return kdispatch.LeastConn, true
	}
	return 0, false
}
