package restart

import (
	"testing"
	"time"
)

func TestRestartPolicy(t *testing.T) {
	p := Policy{FirstDelay: 10 * time.Millisecond, MaxDelay: 50 * time.Millisecond,
		StableAfter: time.Second, Window: 10 * time.Second, MaxCrashes: 4}
	var h History
	t0 := time.Unix(1000, 0)
	now := t0
	var delays []time.Duration
	for i := 0; i < 3; i++ {
		giveUp, n := p.Crashed(&h, now, now.Add(time.Millisecond))
		if giveUp || n != i+1 {
			t.Fatalf("crash %d: giveUp=%v crashes=%d", i+1, giveUp, n)
		}
		delays = append(delays, p.NextDelay(&h))
		now = now.Add(2 * time.Millisecond)
	}
	if want := []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond}; !equalDurations(delays, want) {
		t.Errorf("delays %v, want %v", delays, want)
	}
	if d := p.NextDelay(&h); d != 50*time.Millisecond {
		t.Errorf("delay capped at %v, want 50ms", d)
	}
	if giveUp, n := p.Crashed(&h, now, now.Add(time.Millisecond)); !giveUp || n != 4 {
		t.Errorf("4th crash within the window: giveUp=%v crashes=%d, want given up at 4", giveUp, n)
	}

	// A worker that stayed up stableAfter starts the count and the delay afresh.
	stable := now.Add(time.Hour)
	if giveUp, n := p.Crashed(&h, now, stable); giveUp || n != 1 {
		t.Errorf("crash after a stable run: giveUp=%v crashes=%d, want 1", giveUp, n)
	}
	if d := p.NextDelay(&h); d != 10*time.Millisecond {
		t.Errorf("delay after a stable run %v, want 10ms", d)
	}

	// Crashes older than the window no longer count.
	var h2 History
	start := time.Unix(5000, 0)
	for i := 0; i < 3; i++ {
		at := start.Add(time.Duration(i) * 6 * time.Second)
		p.Crashed(&h2, at.Add(-time.Millisecond), at)
	}
	if len(h2.crashes) != 2 {
		t.Errorf("crashes kept %d, want 2 within a 10s window", len(h2.crashes))
	}
}

func equalDurations(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
