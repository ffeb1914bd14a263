//go:build unix

package sockshare

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/sockshare/sockshare/internal/ipc"
	"github.com/sockshare/sockshare/policy"
	"github.com/sockshare/sockshare/tcp"
)

// groupKey identifies one shared address: every worker's n-th Listen of the
// same network and address string shares one group, as in Node.js.
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

// group is one address served under one policy.
type group struct {
	id       uint32
	key      groupKey
	policy   policy.Name
	fellBack bool
	addr     net.Addr
	sockets  slotSockets     // shared, reuseport
	disp     *tcp.Dispatcher // rr, leastconn
}

func (g *group) close() {
	if g.disp != nil {
		g.disp.Close()
	}
	if g.sockets != nil {
		g.sockets.Close()
	}
}

func isStream(network string) bool {
	return network == "tcp" || network == "tcp4" || network == "tcp6"
}

func isPacket(network string) bool {
	return network == "udp" || network == "udp4" || network == "udp6"
}

// serveListen answers a worker's Listen: find or open the group, attach the
// worker, reply. Runs on the worker's reader goroutine.
func (m *Master) serveListen(w *workerProc, req *ipc.Msg) {
	reply := ipc.Msg{Type: ipc.ListenReply, Seq: req.Seq, Network: req.Network}
	g, pol, fallback, err := m.groupFor(w, req)
	if err != nil {
		reply.Policy = string(pol)
		// The worker's error names the network, address and policy
		// itself: send the cause ("bind: address already in use").
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
		reply.Flags = remoteFlags(err)
		w.send(&reply, nil)
		// Info, not Warn: the error is the worker's Listen result and an
		// EventListenError; the program decides whether it is a problem.
		m.log.Info("sockshare: listen failed", "worker", w.id, "network", req.Network, "addr", req.Addr, "err", err)
		remote := &remoteError{msg: reply.Err, errno: errno, flags: reply.Flags}
		m.mu.Lock()
		if m.listenErr == nil {
			m.listenErr = &ListenError{WorkerID: w.id, Network: req.Network, Addr: req.Addr, Err: remote}
			m.notifyLocked()
		}
		m.mu.Unlock()
		m.emit(Event{Type: EventListenError, WorkerID: w.id, Slot: w.slot, PID: w.pid, Network: req.Network, Addr: req.Addr, Err: remote})
		return
	}
	if fallback != nil {
		m.emit(*fallback)
	}
	reply.Listener = g.id
	reply.Policy = string(g.policy)
	reply.Addr = g.addr.String()
	if g.fellBack {
		reply.Flags |= ipc.FlagFallback
	}
	if g.disp != nil {
		reply.Window = uint32(g.disp.Window())
		if g.disp.TracksClose() {
			reply.Flags |= ipc.FlagTrackClose
		}
		// Reply first, so the worker knows the listener before the first
		// connection arrives; then make it eligible.
		if err := w.send(&reply, nil); err != nil {
			return
		}
		mem := g.disp.Add(w.slot, w)
		w.mu.Lock()
		if old := w.members[g.id]; old != nil {
			// The worker listened on this group again (after closing it).
			defer g.disp.Remove(old)
		}
		w.members[g.id] = mem
		gone := w.state == StateExited
		w.mu.Unlock()
		if gone {
			g.disp.Remove(mem)
		}
	} else {
		fd, err := g.sockets.FD(w.slot)
		if err != nil {
			reply = ipc.Msg{Type: ipc.ListenReply, Seq: req.Seq, Network: req.Network, Err: err.Error()}
			w.send(&reply, nil)
			return
		}
		reply.NumFDs = 1
		if err := w.send(&reply, []int{fd}); err != nil {
			return
		}
	}
	w.setState(StateListening)
	m.emit(Event{Type: EventListening, WorkerID: w.id, Slot: w.slot, PID: w.pid, Network: req.Network, Addr: reply.Addr, Policy: g.policy})
	// Readiness is implied by the first Listen served.
	w.markReady()
}

// groupFor finds or opens the group for a Listen request. Bind errors are
// returned, not remembered: a later Listen tries again.
func (m *Master) groupFor(w *workerProc, req *ipc.Msg) (g *group, pol policy.Name, fallback *Event, err error) {
	pol = m.pol
	if req.Policy != "" {
		p, err := policy.Parse(req.Policy)
		if err != nil {
			return nil, "", nil, err
		}
		pol = p
	}
	asked := pol
	fellBack := false
	switch {
	case isStream(req.Network):
	case isPacket(req.Network):
		var fb bool
		pol, fb = pol.ForPacket()
		fellBack = fb
	default:
		return nil, pol, nil, fmt.Errorf("%w %q (want tcp, tcp4, tcp6, udp, udp4 or udp6)", ErrNetwork, req.Network)
	}
	key := groupKey{network: req.Network, addr: req.Addr, nth: req.Nth}

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopping {
		return nil, pol, nil, errStopping
	}
	if g := m.groups[key]; g != nil {
		if g.policy != pol {
			return nil, pol, nil, fmt.Errorf("%w: %s %s is served under %q, not %q", ErrPolicyConflict, req.Network, req.Addr, g.policy, pol)
		}
		return g, pol, nil, nil
	}
	m.nextGroup++
	g = &group{id: m.nextGroup, key: key, policy: pol, fellBack: fellBack}
	if isStream(req.Network) {
		err = m.openStream(g, req.Network, req.Addr)
	} else {
		err = m.openPacket(g, req.Network, req.Addr)
	}
	if err != nil {
		return nil, pol, nil, err
	}
	m.groups[key] = g
	m.groupByID[g.id] = g
	if fellBack {
		// Said once per address, not once per worker.
		m.log.Warn("sockshare: policy does not apply to datagram sockets; using shared", "policy", asked, "network", req.Network, "addr", g.addr.String())
		fallback = &Event{Type: EventFallback, WorkerID: w.id, Slot: w.slot, PID: w.pid, Network: req.Network, Addr: g.addr.String(), Policy: pol,
			Err: fmt.Errorf("policy %q does not apply to %s; using %q", asked, req.Network, pol)}
	}
	if isPacket(req.Network) && m.cfg.UDPSteering && pol != policy.ReusePort {
		m.log.Warn("sockshare: UDP steering needs the reuseport policy; not applied", "policy", pol, "addr", g.addr.String())
	}
	return g, pol, fallback, nil
}

func (m *Master) openStream(g *group, network, address string) error {
	if _, err := net.ResolveTCPAddr(network, address); err != nil {
		return err
	}
	ctx := context.Background()
	switch g.policy {
	case policy.ReusePort:
		rp, err := tcp.NewReusePortGroup(ctx, network, address, m.cfg.Workers)
		if err != nil {
			return err
		}
		g.sockets, g.addr = rp, rp.Addr()
	case policy.Shared:
		sh, err := tcp.NewShared(ctx, network, address)
		if err != nil {
			return err
		}
		g.sockets, g.addr = sh, sh.Addr()
	default:
		ln, err := (&net.ListenConfig{}).Listen(ctx, network, address)
		if err != nil {
			return err
		}
		d, err := tcp.NewDispatcher(ln.(*net.TCPListener), tcp.DispatcherConfig{
			Picker:     g.policy.NewPicker(),
			ListenerID: g.id,
			Window:     m.cfg.Window,
			MaxPending: m.cfg.MaxPending,
			Logger:     m.log,
		})
		if err != nil {
			ln.Close()
			return err
		}
		g.disp, g.addr = d, ln.Addr()
	}
	return nil
}
