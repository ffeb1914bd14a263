//go:build unix

package sockshare

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/sockshare/sockshare/internal/sockfd"
)

// openSockets opens Config.Sockets as pinned groups, before any worker
// starts. A pinned group stays open until the master stops, and every
// worker is one of its members from its start to its exit: it inherits
// the group's descriptor, whether or not it ever speaks IPC.
func (m *Master) openSockets() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.cfg.Sockets {
		pol, asked, fellBack, err := m.policyFor(s.Network, "")
		if err != nil {
			return fmt.Errorf("sockshare: %s %s: %w", s.Network, s.Address, err)
		}
		if fellBack {
			m.log.Warn("sockshare: policy does not apply to datagram sockets here; using "+string(pol), "policy", asked, "network", s.Network, "addr", s.Address)
		}
		key := groupKey{network: s.Network, addr: s.Address}
		g, _, err := m.openGroupLocked(key, pol, fellBack, 0, s.File)
		if err != nil {
			return fmt.Errorf("sockshare: %s %s: %w", s.Network, s.Address, err)
		}
		g.pinned = true
		close(g.announced)
		m.pinned = append(m.pinned, g)
	}
	return nil
}

// inheritFiles returns, for a worker about to start in slot, its
// descriptors of the pinned groups that have one, in Config.Sockets order,
// as duplicates to pass to exec (the caller closes them once the worker
// has started).
func (m *Master) inheritFiles(slot int) ([]*os.File, error) {
	var files []*os.File
	for _, g := range m.pinned {
		if g.sockets == nil {
			continue // the master accepts: the worker must Listen
		}
		g.opMu.Lock()
		fd, err := g.sockets.FD(slot)
		dup := -1
		if err == nil {
			dup, err = sockfd.DupCloexec(fd)
		}
		g.opMu.Unlock()
		if err != nil {
			closeFiles(files)
			return nil, fmt.Errorf("%s %s, slot %d: %w", g.key.network, g.addr, slot, err)
		}
		files = append(files, os.NewFile(uintptr(dup), g.key.network+" "+g.addr.String()))
	}
	return files, nil
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

// joinPinnedLocked makes w a member of every pinned group. Call with m.mu
// held, before w's exit can be handled.
func (m *Master) joinPinnedLocked(w *workerProc) {
	for _, g := range m.pinned {
		if !g.closed {
			m.joinLocked(w, g)
		}
	}
}

// livePinned lets the kernel's program choose w's slot in the pinned
// kernel groups, once w is ready: until then its connections would wait.
func (m *Master) livePinned(w *workerProc) {
	m.mu.Lock()
	var gs []*group
	for _, g := range m.pinned {
		if g.kernel != nil && g.members[w] {
			gs = append(gs, g)
		}
	}
	m.mu.Unlock()
	for _, g := range gs {
		g.opMu.Lock()
		if err := g.kernel.SetLive(w.slot, true); err != nil {
			m.log.Error("sockshare: kernel dispatch: cannot make the slot live", "addr", g.addr.String(), "slot", w.slot, "err", err)
		}
		g.opMu.Unlock()
	}
}

// awaitReadiness runs Config.Readiness for w: nil marks it ready, an error
// kills it (a crash with that error).
func (w *workerProc) awaitReadiness(info WorkerInfo) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-w.ready:
		case <-w.exited:
		case <-ctx.Done():
		}
		cancel()
	}()
	err := w.m.cfg.Readiness(ctx, info)
	if ctx.Err() != nil && (err == nil || errors.Is(err, context.Canceled)) {
		return // ready some other way, or gone
	}
	if err == nil {
		w.markReady()
		return
	}
	w.m.log.Error("sockshare: worker not ready; killing it", "worker", w.id, "slot", w.slot, "pid", w.pid, "err", err)
	w.mu.Lock()
	if w.protoErr == nil {
		w.protoErr = fmt.Errorf("not ready: %w", err)
	}
	w.mu.Unlock()
	w.kill()
}
