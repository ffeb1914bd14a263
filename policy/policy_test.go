package policy

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	cases := map[string]Name{
		"shared": Shared, "none": Shared, "rr": RR, "round-robin": RR,
		"leastconn": LeastConn, "reuseport": ReusePort, " RR ": RR,
	}
	for in, want := range cases {
		got, err := Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestParseUnknownNamesValidChoices(t *testing.T) {
	_, err := Parse("x")
	const want = `unknown policy "x" (valid: shared, rr, leastconn, reuseport, sticky)`
	if err == nil || err.Error() != want {
		t.Fatalf("Parse(x) error = %v; want %s", err, want)
	}
	if !errors.Is(err, ErrUnknownPolicy) {
		t.Fatalf("errors.Is(%v, ErrUnknownPolicy) = false", err)
	}
	if _, err := Parse(""); !errors.Is(err, ErrUnknownPolicy) {
		t.Fatalf("Parse(\"\") error = %v; want ErrUnknownPolicy", err)
	}
}

func TestResolve(t *testing.T) {
	t.Setenv(EnvVar, "")
	if n, err := Resolve(""); err != nil || n != RR {
		t.Fatalf("Resolve with nothing set = %q, %v; want rr", n, err)
	}
	t.Setenv(EnvVar, "reuseport")
	if n, err := Resolve(""); err != nil || n != ReusePort {
		t.Fatalf("Resolve from env = %q, %v; want reuseport", n, err)
	}
	if n, err := Resolve("shared"); err != nil || n != Shared {
		t.Fatalf("explicit name must win over env: got %q, %v", n, err)
	}
	t.Setenv(EnvVar, "bogus")
	if _, err := Resolve(""); !errors.Is(err, ErrUnknownPolicy) || err.Error() != `SOCKSHARE_POLICY: unknown policy "bogus" (valid: shared, rr, leastconn, reuseport, sticky)` {
		t.Fatalf("bad env value error = %v", err)
	}
}

func TestProperties(t *testing.T) {
	for _, n := range Names() {
		if got := n.NewPicker() != nil; got != n.Dispatches() {
			t.Errorf("%s: NewPicker()!=nil is %v but Dispatches() is %v", n, got, n.Dispatches())
		}
	}
	if p, fb := RR.ForPacket(); p != Shared || !fb {
		t.Errorf("rr.ForPacket() = %s, %v; want shared, true", p, fb)
	}
	if p, fb := ReusePort.ForPacket(); p != ReusePort || fb {
		t.Errorf("reuseport.ForPacket() = %s, %v", p, fb)
	}
}

// run hands n connections to cands via p, honouring credit and updating the
// candidates the way a dispatcher would, and returns how many each got.
func run(p Picker, cands []Candidate, n int) []int {
	got := make([]int, len(cands))
	for i := 0; i < n; i++ {
		k := p.Pick(cands)
		if k < 0 {
			break
		}
		got[k]++
	}
	return got
}

func TestRoundRobinIsCountExact(t *testing.T) {
	cands := []Candidate{{Slot: 0, Credit: 1}, {Slot: 1, Credit: 1}, {Slot: 2, Credit: 1}}
	if d := cmp.Diff([]int{334, 333, 333}, run(NewRoundRobin(), cands, 1000)); d != "" {
		t.Fatalf("rr counts (-want +got):\n%s", d)
	}
}

func TestRoundRobinSkipsFullWindow(t *testing.T) {
	p := NewRoundRobin()
	cands := []Candidate{{Slot: 0, Credit: 0}, {Slot: 1, Credit: 3}}
	if d := cmp.Diff([]int{0, 10}, run(p, cands, 10)); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
	if k := p.Pick([]Candidate{{Slot: 0}, {Slot: 1}}); k != -1 {
		t.Fatalf("Pick with no credit = %d; want -1", k)
	}
	if k := p.Pick(nil); k != -1 {
		t.Fatalf("Pick(nil) = %d; want -1", k)
	}
}

func TestLeastConnPicksLeastLoaded(t *testing.T) {
	p := NewLeastConn()
	cands := []Candidate{
		{Slot: 0, Active: 10, Credit: 5},
		{Slot: 1, Active: 2, Inflight: 1, Credit: 5},
		{Slot: 2, Active: 1, Credit: 0}, // least loaded but window full
	}
	if k := p.Pick(cands); k != 1 {
		t.Fatalf("Pick = %d; want 1", k)
	}
	// Equal load: rotation, not always the first.
	eq := []Candidate{{Slot: 0, Credit: 1}, {Slot: 1, Credit: 1}}
	a, b := p.Pick(eq), p.Pick(eq)
	if a == b {
		t.Fatalf("ties went to the same worker twice (%d, %d)", a, b)
	}
	if !p.TracksActive() || NewRoundRobin().TracksActive() {
		t.Fatal("only leastconn tracks active connections")
	}
}
