package restart

import "time"

// Policy is the supervisor's rule for a slot whose worker crashed: restart
// it after a delay that doubles with each crash up to MaxDelay and starts
// again from FirstDelay once a worker has stayed up StableAfter; give the
// slot up after MaxCrashes crashes within Window. It is pure: the caller
// brings the clock and does the restarting.
type Policy struct {
	FirstDelay, MaxDelay time.Duration
	StableAfter, Window  time.Duration
	MaxCrashes           int
}

// History is one slot's record for a Policy. The zero value is a slot
// that never crashed.
type History struct {
	delay   time.Duration // the next restart delay; 0 means firstDelay
	crashes []time.Time   // within the window
}

// Crashed records that a worker started at started crashed at now, and
// reports whether the slot is to be given up, with the crashes counted.
func (p Policy) Crashed(h *History, started, now time.Time) (giveUp bool, crashes int) {
	if now.Sub(started) >= p.StableAfter {
		p.Reset(h)
	}
	h.crashes = append(h.crashes, now)
	keep := h.crashes[:0]
	for _, t := range h.crashes {
		if now.Sub(t) <= p.Window {
			keep = append(keep, t)
		}
	}
	h.crashes = keep
	return len(h.crashes) >= p.MaxCrashes, len(h.crashes)
}

// NextDelay returns the delay before the restart that follows a crash, and
// doubles the one after it.
func (p Policy) NextDelay(h *History) time.Duration {
	d := h.delay
	if d == 0 {
		d = p.FirstDelay
	}
	h.delay = min(d*2, p.MaxDelay)
	return d
}

// Reset forgets the crashes: the slot starts afresh (a stable worker, or a
// reload that revives a given-up slot).
func (p Policy) Reset(h *History) {
	h.delay = 0
	h.crashes = h.crashes[:0]
}
