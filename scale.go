//go:build unix

package sockshare

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Scale sets the number of worker slots to n while Run runs. New slots get
// a worker each at once, started as at Run's start; when n is smaller, the
// highest slots are removed: their workers are disconnected (no new
// connections, SIGTERM, killed after ShutdownTimeout) and not restarted,
// and under reuseport their sockets leave the groups. Scale returns once
// the new workers have started and the removed ones have exited, or when
// ctx ends (the removed workers still exit then). It waits for a reload in
// progress, and a reload waits for it.
//
// n must be between 1 and MaxWorkers (ErrBadConfig otherwise). Under
// kernel dispatch a group has the number of slots it was opened with, so n
// cannot exceed it: that is an error matching errors.ErrUnsupported.
func (m *Master) Scale(ctx context.Context, n int) error {
	if !m.running.Load() {
		return errors.New("sockshare: Scale: the master is not running")
	}
	if n < 1 || n > MaxWorkers {
		return fmt.Errorf("%w: workers must be between 1 and %d, got %d", ErrBadConfig, MaxWorkers, n)
	}
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	m.mu.Lock()
	if m.stopping {
		m.mu.Unlock()
		return errStopping
	}
	for _, g := range m.groups {
		if g.kernel != nil && n > g.kernel.Slots() {
			m.mu.Unlock()
			return fmt.Errorf("sockshare: Scale to %d: the kernel dispatch group of %s %s has %d slots: %w", n, g.key.network, g.addr, g.kernel.Slots(), errors.ErrUnsupported)
		}
	}
	was := m.activeLocked()
	var gone []*workerProc
	for slot := n; slot < was; slot++ {
		s := m.slots[slot]
		s.removed = true
		s.pending = false
		if s.current != nil {
			gone = append(gone, s.current)
			s.current = nil
		}
	}
	for slot := was; slot < n; slot++ {
		if slot == len(m.slots) {
			m.slots = append(m.slots, &slotState{})
		}
		s := m.slots[slot]
		*s = slotState{} // a fresh start, as a new slot
	}
	m.notifyLocked()
	m.mu.Unlock()
	if n != was {
		m.log.Info("sockshare: scaling", "from", was, "to", n)
	}

	for slot := was; slot < n; slot++ {
		if _, err := m.spawn(slot); err != nil {
			return fmt.Errorf("sockshare: Scale: start worker for slot %d: %w", slot, err)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(gone))
	for i, w := range gone {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = m.retire(ctx, w) // gone from Workers once it returns
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
