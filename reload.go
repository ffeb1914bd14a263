//go:build unix

package sockshare

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

type reloadReq struct {
	ctx  context.Context
	done chan error
}

// Reload replaces every worker, slot by slot, without refusing or resetting
// a connection: for each slot it starts the replacement, waits until it is
// ready, then disconnects the old worker (stop handing it connections,
// SIGTERM, kill after ShutdownTimeout). Config.ReloadParallel slots are
// replaced at a time (default 1).
//
// Why nothing is lost, per policy: under rr and leastconn the old worker
// leaves the rotation only once the new one listens, and the connections in
// its window are handed back and re-dispatched when it closes its listener;
// under shared the old worker stops accepting after the new one accepts on
// the same socket; under reuseport the replacement receives the slot's
// socket, which the master keeps, before the old worker lets go of it.
//
// A replacement that exits or misses ReadyTimeout before it is ready
// aborts the reload with an error; the old worker of that slot keeps
// serving. Reload returns when every slot is done or ctx ends, and fails if
// Run is not running.
func (m *Master) Reload(ctx context.Context) error {
	if !m.running.Load() {
		return errors.New("sockshare: Reload: the master is not running")
	}
	r := reloadReq{ctx: ctx, done: make(chan error, 1)}
	select {
	case m.reloads <- r:
	case <-m.done:
		return errors.New("sockshare: Reload: the master has stopped")
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r reloadReq) run(m *Master) {
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	par := max(1, m.cfg.ReloadParallel)
	n := m.NumWorkers() // Scale waits for reloadMu too
	for first := 0; first < n; first += par {
		var wg sync.WaitGroup
		errs := make([]error, min(par, n-first))
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = m.replaceSlot(r.ctx, first+i)
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			r.done <- fmt.Errorf("sockshare: reload: %w", err)
			return
		}
	}
	r.done <- nil
}

// replaceSlot starts a new worker in slot, waits until it is ready, then
// disconnects the old one and waits for it to exit.
func (m *Master) replaceSlot(ctx context.Context, slot int) error {
	m.mu.Lock()
	if m.stopping {
		m.mu.Unlock()
		return errStopping
	}
	s := m.slots[slot]
	old := s.current
	// A given-up slot gets a fresh start.
	s.givenUp = false
	m.restart.Reset(&s.history)
	m.mu.Unlock()

	nw, err := m.spawn(slot)
	if err != nil {
		m.restoreSlot(slot, old)
		return fmt.Errorf("slot %d: start replacement: %w", slot, err)
	}
	select {
	case <-nw.ready:
	case <-nw.exited:
		m.restoreSlot(slot, old)
		return fmt.Errorf("slot %d: replacement worker %d exited before it was ready: %v", slot, nw.id, nw.exitEvent)
	case <-ctx.Done():
		// Keep whichever is serving: the old one. Stop the newcomer.
		m.restoreSlot(slot, old)
		nw.disconnect()
		return ctx.Err()
	}
	if old == nil {
		return nil
	}
	return m.retire(ctx, old)
}

// restoreSlot gives slot back to old after a failed replacement.
func (m *Master) restoreSlot(slot int, old *workerProc) {
	if old == nil {
		return
	}
	m.mu.Lock()
	if _, alive := m.workers[old.id]; alive {
		m.slots[slot].current = old
	}
	m.mu.Unlock()
}

// retire disconnects w and waits until it has exited and the supervisor
// has handled the exit (so it is gone from Workers), or ctx ends. Either
// way w is killed if it is still running ShutdownTimeout after the
// disconnect (see workerProc.disconnect).
func (m *Master) retire(ctx context.Context, w *workerProc) error {
	w.disconnect()
	select {
	case <-w.handled:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Disconnect asks one worker to drain and exit: the master stops handing it
// connections and sends SIGTERM; past ShutdownTimeout it is killed. The
// exit counts as asked for, so the slot is not restarted: use Reload to
// replace workers. Disconnect returns once the worker has exited and is
// gone from Workers, or when ctx ends.
func (m *Master) Disconnect(ctx context.Context, workerID int) error {
	m.mu.Lock()
	w := m.workers[workerID]
	if w != nil && m.slots[w.slot].current == w {
		m.slots[w.slot].current = nil
	}
	m.mu.Unlock()
	if w == nil {
		return fmt.Errorf("%w: %d", ErrUnknownWorker, workerID)
	}
	return m.retire(ctx, w)
}
