package policy

// NewLeastConn returns the leastconn picker: the candidate with the fewest
// open connections (taken plus in flight), ties broken in rotation so that
// idle workers share the load evenly.
func NewLeastConn() Picker { return &leastConn{} }

type leastConn struct {
	next int
}

func (l *leastConn) Pick(cands []Candidate) int {
	best, bestLoad, bestDist := -1, 0, 0
	for i, c := range cands {
		if c.Credit <= 0 {
			continue
		}
		load := c.Active + c.Inflight
		d := c.Slot - l.next
		if d < 0 {
			d += 1 << 30
		}
		if best < 0 || load < bestLoad || (load == bestLoad && d < bestDist) {
			best, bestLoad, bestDist = i, load, d
		}
	}
	if best >= 0 {
		l.next = cands[best].Slot + 1
	}
	return best
}

func (l *leastConn) TracksActive() bool { return true }
