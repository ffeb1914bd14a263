package policy

import (
	"net/netip"
	"slices"
)

// NewSticky returns the sticky picker: every connection from one client IP
// address goes to the same slot while that slot has a worker, through a
// Maglev table (the same table kernel dispatch uses, so both agree), so
// that when a slot goes away only its clients move, and they come back
// with it. Connections without an address go round robin.
func NewSticky() Picker { return &sticky{rr: NewRoundRobin()} }

type sticky struct {
	rr    Picker
	live  []bool // the slots the table was built for
	table *Maglev
	buf   []bool
}

func (s *sticky) Pick(cands []Candidate) int { return s.rr.Pick(cands) }

func (s *sticky) TracksActive() bool { return false }

func (s *sticky) PickClient(client netip.Addr, cands []Candidate) int {
	n := len(s.live)
	for _, c := range cands {
		n = max(n, c.Slot+1)
	}
	s.buf = slices.Grow(s.buf[:0], n)[:n]
	clear(s.buf)
	for _, c := range cands {
		s.buf[c.Slot] = true
	}
	if s.table == nil || !slices.Equal(s.buf, s.live) {
		t, err := NewMaglev(s.buf, 0)
		if err != nil {
			return s.rr.Pick(cands)
		}
		s.table, s.live = t, slices.Clone(s.buf)
	}
	slot := s.table.Slot(HashIP(client))
	for i, c := range cands {
		if c.Slot == slot {
			if c.Credit > 0 {
				return i
			}
			return -1 // wait for the client's own worker
		}
	}
	return s.rr.Pick(cands)
}
