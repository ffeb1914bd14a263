package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
)

func allLive(n int) []bool {
	live := make([]bool, n)
	for i := range live {
		live[i] = true
	}
	return live
}

func countEntries(m *Maglev) []int {
	counts := make([]int, m.Slots())
	for _, s := range m.Table() {
		if s != NoSlot {
			counts[s]++
		}
	}
	return counts
}

// With every slot live the spread is Maglev's: each slot owns size/n
// entries, rounded up or down.
func TestMaglevEvenSpread(t *testing.T) {
	for _, size := range []int{4099, 16381, MaglevSize} {
		for _, n := range []int{1, 2, 3, 7, 64, 1024} {
			if n > size/4 {
				continue
			}
			m, err := NewMaglev(allLive(n), size)
			if err != nil {
				t.Fatal(err)
			}
			counts := countEntries(m)
			lo, hi := minMax(counts)
			if hi-lo > 1 {
				t.Errorf("size %d, %d slots: entries per slot from %d to %d; want within 1", size, n, lo, hi)
			}
		}
	}
}

// After a slot is removed its entries spread over the others within 2%
// of the mean (the default size; 3 to 16 slots).
func TestMaglevSpreadAfterRemoval(t *testing.T) {
	for _, n := range []int{3, 4, 8, 16} {
		live := allLive(n)
		live[1] = false
		m, err := NewMaglev(live, 0)
		if err != nil {
			t.Fatal(err)
		}
		counts := countEntries(m)
		if counts[1] != 0 {
			t.Fatalf("%d slots: removed slot still owns %d entries", n, counts[1])
		}
		mean := float64(MaglevSize) / float64(n-1)
		for s, c := range counts {
			if s != 1 && (float64(c) < 0.98*mean || float64(c) > 1.02*mean) {
				t.Errorf("%d slots, slot 1 removed: slot %d owns %d entries; mean %.0f", n, s, c, mean)
			}
		}
	}
}

// The promise kernel and master dispatch rely on: removing one slot moves
// only that slot's keys, whatever else is already down, and reviving it
// moves only keys back to it.
func TestMaglevRemovalMovesOnlyThatSlot(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{2, 3, 5, 8, 33} {
		live := allLive(n)
		prev, err := NewMaglev(live, 4099)
		if err != nil {
			t.Fatal(err)
		}
		// Take slots down one by one in a random order until one is left,
		// then bring them back in another order.
		order := rng.Perm(n)
		steps := append(append([]int(nil), order[:n-1]...), rng.Perm(n)...)
		for i, s := range steps {
			if i >= n-1 && live[s] {
				continue
			}
			live[s] = !live[s]
			next, err := NewMaglev(live, 4099)
			if err != nil {
				t.Fatal(err)
			}
			before, after := prev.Table(), next.Table()
			moved := 0
			for e := range before {
				if before[e] == after[e] {
					continue
				}
				if live[s] && after[e] != uint32(s) || !live[s] && before[e] != uint32(s) {
					moved++
				}
			}
			if moved != 0 {
				t.Fatalf("%d slots, slot %d set live=%v: %d entries of other slots moved; want 0", n, s, live[s], moved)
			}
			prev = next
		}
	}
}

// Keys, not just entries: 100,000 random client addresses, one slot
// removed, none of the other slots' clients moves.
func TestMaglevClientsStay(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const n = 3
	full, _ := NewMaglev(allLive(n), 0)
	live := allLive(n)
	live[2] = false
	less, _ := NewMaglev(live, 0)
	perSlot := make([]int, n)
	for range 100000 {
		a := netip.AddrFrom4([4]byte{byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())})
		h := HashIP(a)
		before, after := full.Slot(h), less.Slot(h)
		perSlot[before]++
		if before != 2 && before != after {
			t.Fatalf("client %v moved from slot %d to %d", a, before, after)
		}
		if after == 2 {
			t.Fatalf("client %v on removed slot 2", a)
		}
	}
	if j := jain(perSlot); j < 0.999 {
		t.Errorf("clients per slot %v: Jain %.4f; want >= 0.999", perSlot, j)
	}
}

func TestMaglevNoLiveSlot(t *testing.T) {
	m, err := NewMaglev(make([]bool, 4), 4099)
	if err != nil {
		t.Fatal(err)
	}
	if s := m.Slot(12345); s != -1 {
		t.Fatalf("Slot with nothing live = %d; want -1", s)
	}
}

func TestMaglevBadSize(t *testing.T) {
	for _, c := range []struct {
		n, size int
	}{{0, 4099}, {3, 4096}, {10, 7}, {2, 1<<24 + 43}} {
		if _, err := NewMaglev(make([]bool, c.n), c.size); err == nil {
			t.Errorf("NewMaglev(%d slots, size %d) succeeded; want an error", c.n, c.size)
		}
	}
	_, err := NewMaglev(make([]bool, 2), 4096)
	const want = "policy: maglev: table size 4096 for 2 slots: want a prime between the slot count and 2^24"
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v; want %s", err, want)
	}
}

// HashIP's definition, pinned by value: the BPF program must compute the
// same numbers (internal/kdispatch tests the agreement in the kernel).
func TestHashIP(t *testing.T) {
	cases := []struct {
		addr string
		want uint32
	}{
		{"0.0.0.0", 0},
		{"127.0.0.1", mix32(0x7f000001)},
		{"::ffff:127.0.0.1", mix32(0x7f000001)},
		{"10.1.2.3", mix32(0x0a010203)},
		{"2001:db8::1", chain(0x20010db8, 0, 0, 1)},
		{"fe80::1%eth0", chain(0xfe800000, 0, 0, 1)},
	}
	for _, c := range cases {
		if got := HashIP(netip.MustParseAddr(c.addr)); got != c.want {
			t.Errorf("HashIP(%s) = %#x; want %#x", c.addr, got, c.want)
		}
	}
	// murmur3 fmix32 reference values.
	if got := mix32(1); got != 0x514e28b7 {
		t.Errorf("mix32(1) = %#x; want 0x514e28b7", got)
	}
	if HashIP(netip.Addr{}) != 0 {
		t.Errorf("HashIP(invalid) != 0")
	}
}

// chain is HashIP's definition for IPv6 words, spelled out.
func chain(words ...uint32) uint32 {
	var h uint32
	for _, w := range words {
		h = mix32(h ^ w)
	}
	return h
}

func BenchmarkNewMaglev(b *testing.B) {
	for _, n := range []int{4, 64, 1024} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			live := allLive(n)
			live[0] = false
			for b.Loop() {
				if _, err := NewMaglev(live, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func minMax(xs []int) (lo, hi int) {
	lo, hi = xs[0], xs[0]
	for _, x := range xs {
		lo, hi = min(lo, x), max(hi, x)
	}
	return lo, hi
}

func jain(xs []int) float64 {
	var sum, sq float64
	for _, x := range xs {
		sum += float64(x)
		sq += float64(x) * float64(x)
	}
	return sum * sum / (float64(len(xs)) * sq)
}
