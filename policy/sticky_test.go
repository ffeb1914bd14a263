package policy

import (
	"net/netip"
	"testing"
)

// TestStickyPicker: one client always gets the same slot, the slot the
// Maglev table (shared with kernel dispatch) names; when a slot goes away
// only its clients move, and they come back with it; a slot without credit
// keeps its clients waiting rather than moving them.
func TestStickyPicker(t *testing.T) {
	p := NewSticky().(ClientPicker)
	cands := func(slots ...int) []Candidate {
		var cs []Candidate
		for _, s := range slots {
			cs = append(cs, Candidate{Slot: s, Credit: 4})
		}
		return cs
	}
	all := cands(0, 1, 2)
	table, err := NewMaglev([]bool{true, true, true}, 0)
	if err != nil {
		t.Fatal(err)
	}
	first := map[netip.Addr]int{}
	per := make([]int, 3)
	for i := range 256 {
		ip := netip.AddrFrom4([4]byte{127, 0, byte(i / 200), byte(i%200 + 1)})
		k := p.PickClient(ip, all)
		slot := all[k].Slot
		if want := table.Slot(HashIP(ip)); slot != want {
			t.Fatalf("%v: slot %d, the table says %d", ip, slot, want)
		}
		if again := all[p.PickClient(ip, all)].Slot; again != slot {
			t.Fatalf("%v: slot %d then %d", ip, slot, again)
		}
		first[ip] = slot
		per[slot]++
	}
	t.Logf("256 clients over 3 slots: %v", per)
	without1 := cands(0, 2)
	for ip, slot := range first {
		got := without1[p.PickClient(ip, without1)].Slot
		if slot != 1 && got != slot {
			t.Fatalf("%v moved from slot %d to %d when slot 1 went away", ip, slot, got)
		}
	}
	for ip, slot := range first {
		if got := all[p.PickClient(ip, all)].Slot; got != slot {
			t.Fatalf("%v: slot %d after slot 1 came back, was %d", ip, got, slot)
		}
	}
	full := cands(0, 1, 2)
	for ip, slot := range first {
		full[slot].Credit = 0
		if k := p.PickClient(ip, full); k != -1 {
			t.Fatalf("%v: picked %d while its slot %d has no credit; want -1", ip, k, slot)
		}
		full[slot].Credit = 4
		break
	}
}
