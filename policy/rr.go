package policy

// NewRoundRobin returns the rr picker: candidates in turn, by slot order,
// skipping any whose window is full. While no worker's window fills, the
// counts handed to each worker differ by at most one.
func NewRoundRobin() Picker { return &roundRobin{next: 0} }

type roundRobin struct {
	next int // slot to try first; slots persist across worker restarts
}

func (r *roundRobin) Pick(cands []Candidate) int {
	if len(cands) == 0 {
		return -1
	}
	// Pick the candidate whose slot comes first at or after r.next,
	// wrapping around. Candidates are few (one per worker), so a linear
	// scan is cheaper than any structure.
	best, bestDist := -1, 0
	for i, c := range cands {
		if c.Credit <= 0 {
			continue
		}
		d := c.Slot - r.next
		if d < 0 {
			d += 1 << 30
		}
		if best < 0 || d < bestDist {
			best, bestDist = i, d
		}
	}
	if best >= 0 {
		r.next = cands[best].Slot + 1
	}
	return best
}

func (r *roundRobin) TracksActive() bool { return false }
