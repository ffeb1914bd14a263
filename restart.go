package sockshare

import "time"

// restartPolicy is the supervisor's rule for a slot whose worker crashed:
// restart it after a delay that doubles with each crash up to maxDelay and
// starts again from firstDelay once a worker has stayed up stableAfter;
// give the slot up after maxCrashes crashes within window. It is pure: the
// caller brings the clock and does the restarting.
type restartPolicy struct {
	firstDelay, maxDelay time.Duration
	stableAfter, window  time.Duration
	maxCrashes           int
}

func newRestartPolicy(c Config) restartPolicy {
	return restartPolicy{
		firstDelay: c.RestartDelay, maxDelay: c.MaxRestartDelay,
		stableAfter: c.StableAfter, window: c.CrashWindow,
		maxCrashes: c.MaxCrashes,
	}
}

// crashHistory is one slot's record for a restartPolicy.
type crashHistory struct {
	delay   time.Duration // the next restart delay; 0 means firstDelay
	crashes []time.Time   // within the window
}

// crashed records that a worker started at started crashed at now, and
// reports whether the slot is to be given up, with the crashes counted.
func (p restartPolicy) crashed(h *crashHistory, started, now time.Time) (giveUp bool, crashes int) {
	if now.Sub(started) >= p.stableAfter {
		p.reset(h)
	}
	h.crashes = append(h.crashes, now)
	keep := h.crashes[:0]
	for _, t := range h.crashes {
		if now.Sub(t) <= p.window {
			keep = append(keep, t)
		}
	}
	h.crashes = keep
	return len(h.crashes) >= p.maxCrashes, len(h.crashes)
}

// nextDelay returns the delay before the restart that follows a crash, and
// doubles the one after it.
func (p restartPolicy) nextDelay(h *crashHistory) time.Duration {
	d := h.delay
	if d == 0 {
		d = p.firstDelay
	}
	h.delay = min(d*2, p.maxDelay)
	return d
}

// reset forgets the crashes: the slot starts afresh (a stable worker, or a
// reload that revives a given-up slot).
func (p restartPolicy) reset(h *crashHistory) {
	h.delay = 0
	h.crashes = h.crashes[:0]
}
