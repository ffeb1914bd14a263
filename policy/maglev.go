package policy

import (
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"
)

// MaglevSize is the default size of a [Maglev] table: the prime 65537
// (2^16+1). It is large enough that even at the most slots a master allows
// (1024) every slot owns at least 64 entries, so the table itself adds at
// most 1/64 (1.6%) of imbalance, and with a handful of slots none that a
// test can see; it is small enough to build in a few milliseconds and to
// store in 256 KiB of kernel memory as a BPF array of u32. Smaller primes
// (4099, 16381) suit up to about 40 or 160 slots at the same 1% bound.
const MaglevSize = 65537

// NoSlot is the table entry of a [Maglev] that has no live slot.
const NoSlot = math.MaxUint32

// Seeds of the slot permutations (offset, skip) and of the fallback scores.
// They are arbitrary; changing them moves every client, so they are fixed.
const (
	seedOffset   = 0x2545f491
	seedSkip     = 0x9e3779b9
	seedFallback = 0x68e31da4
)

// Maglev is a consistent lookup table, after Google's Maglev load balancer,
// that maps a 32-bit hash of a client to one of a fixed number of slots of
// which some are live. Both master dispatch and kernel dispatch (which
// copies [Maglev.Table] into a BPF array) use it, so a client reaches the
// same slot either way.
//
// The table is built in two steps. First Maglev's population over every
// slot, live or not: slot s walks its own permutation of the entries
// (offset and skip derived from s) and the slots take turns claiming the
// next free entry, so each owns M/n entries, rounded up or down. Then each
// entry whose owner is not live goes to the live slot with the highest
// score for that entry (rendezvous hashing). Hence:
//
//   - a slot that stops being live loses its entries and no other entry
//     moves: the first step does not depend on liveness, and the winner of a
//     rendezvous among fewer slots that still include it does not change;
//   - a slot that becomes live again takes back exactly what it lost;
//   - the spread is exact (±1 entry) with every slot live, and near even
//     otherwise (a lost slot's entries are spread by a hash).
//
// Changing the number of slots builds a different table (Maglev's own
// disruption: few, but not zero, entries of other slots move). A Maglev is
// immutable and safe for concurrent use.
type Maglev struct {
	slots int
	table []uint32 // slot per entry, or NoSlot
}

// NewMaglev builds the table for len(live) slots, of which slot i may be
// chosen when live[i]. size is the number of entries: 0 means
// [MaglevSize]; otherwise it must be a prime of at least len(live) and at
// most 2^24.
func NewMaglev(live []bool, size int) (*Maglev, error) {
	if size == 0 {
		size = MaglevSize
	}
	n := len(live)
	if n < 1 {
		return nil, fmt.Errorf("policy: maglev: need at least one slot")
	}
	if size < n || size > 1<<24 || !isPrime(size) {
		return nil, fmt.Errorf("policy: maglev: table size %d for %d slots: want a prime between the slot count and 2^24", size, n)
	}
	table := populate(n, size)
	var alive []uint32
	for s, ok := range live {
		if ok {
			alive = append(alive, uint32(s))
		}
	}
	for e, owner := range table {
		if live[owner] {
			continue
		}
		table[e] = rendezvous(uint32(e), alive)
	}
	return &Maglev{slots: n, table: table}, nil
}

// populate is Maglev's table population over n slots and size entries.
func populate(n, size int) []uint32 {
	m := uint64(size)
	next := make([]uint64, n) // position of each slot in its permutation
	skip := make([]uint64, n)
	for s := range n {
		next[s] = uint64(mix32(uint32(s)^seedOffset)) % m
		skip[s] = uint64(mix32(uint32(s)^seedSkip))%(m-1) + 1
	}
	table := make([]uint32, size)
	for i := range table {
		table[i] = NoSlot
	}
	for filled := 0; ; {
		for s := range n {
			// size is prime, so each slot's walk visits every entry; a
			// free one is always found while the table is not full.
			c, k := next[s], skip[s]
			for table[c] != NoSlot {
				if c += k; c >= m { // c, k < m: one subtraction is the modulo
					c -= m
				}
			}
			table[c] = uint32(s)
			if c += k; c >= m {
				c -= m
			}
			next[s] = c
			if filled++; filled == size {
				return table
			}
		}
	}
}

// rendezvous returns the slot of alive with the highest score for entry e,
// or NoSlot when alive is empty.
func rendezvous(e uint32, alive []uint32) uint32 {
	best, bestScore := uint32(NoSlot), uint32(0)
	k := mix32(e ^ seedFallback)
	for _, s := range alive {
		score := mix32(k ^ mix32(s+seedFallback))
		if best == NoSlot || score > bestScore {
			best, bestScore = s, score
		}
	}
	return best
}

func isPrime(n int) bool {
	if n < 2 {
		return false
	}
	for d := 2; d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

// Slot returns the slot for a client whose hash (see [HashIP]) is h, or -1
// when no slot is live.
func (m *Maglev) Slot(h uint32) int {
	s := m.table[h%uint32(len(m.table))]
	if s == NoSlot {
		return -1
	}
	return int(s)
}

// Size returns the number of entries.
func (m *Maglev) Size() int { return len(m.table) }

// Slots returns the number of slots, live or not.
func (m *Maglev) Slots() int { return m.slots }

// Table returns a copy of the entries: the slot for hash h is
// Table()[h % Size()], [NoSlot] when no slot is live.
func (m *Maglev) Table() []uint32 {
	return append([]uint32(nil), m.table...)
}

// HashIP returns the 32-bit hash of a client address that [Maglev.Slot]
// takes. An IPv4 address, or an IPv4-mapped IPv6 address (::ffff:a.b.c.d,
// which is the same client), hashes as mix32 of its 4 bytes read as a
// big-endian u32. Any other IPv6 address chains its four big-endian words:
// h = mix32(h ^ w) from h = 0, so an IPv4 address is the one-word case.
// The zone is ignored; the invalid Addr hashes to 0.
//
// The kernel dispatch program computes the same function in BPF (see
// internal/kdispatch); mix32 is murmur3's 32-bit finaliser, two multiplies
// and three xor-shifts, chosen because it takes a dozen BPF instructions
// and mixes every input bit into every output bit. It is not keyed: a
// client that picks its source addresses can choose its slot.
func HashIP(a netip.Addr) uint32 {
	a = a.Unmap()
	switch {
	case a.Is4():
		b := a.As4()
		return mix32(binary.BigEndian.Uint32(b[:]))
	case a.Is6():
		b := a.As16()
		var h uint32
		for i := 0; i < 16; i += 4 {
			h = mix32(h ^ binary.BigEndian.Uint32(b[i:]))
		}
		return h
	}
	return 0
}

// mix32 is murmur3's fmix32. internal/kdispatch emits the same steps in BPF
// with the same multipliers.
func mix32(h uint32) uint32 {
	h ^= h >> 16
	h *= Mix32Mul1
	h ^= h >> 13
	h *= Mix32Mul2
	h ^= h >> 16
	return h
}

// The multipliers of the hash behind [HashIP], exported so that the BPF
// program in internal/kdispatch is built from the same numbers.
const (
	Mix32Mul1 = 0x85ebca6b
	Mix32Mul2 = 0xc2b2ae35
)
