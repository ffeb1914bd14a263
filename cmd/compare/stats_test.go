package main

import (
	"math"
	"slices"
	"testing"
)

func near(a, b, tol float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	if math.IsInf(a, 0) || math.IsInf(b, 0) {
		return a == b
	}
	return math.Abs(a-b) <= tol
}

func TestJain(t *testing.T) {
	cases := []struct {
		xs   []float64
		want float64
	}{
		{[]float64{1, 1, 1, 1}, 1},
		{[]float64{1, 0}, 0.5},                               // 1² / (2·1)
		{[]float64{1, 2, 3}, 36.0 / 42.0},                    // 6² / (3·14)
		{[]float64{10, 0, 0, 0}, 0.25},                       // one of four holds everything: 1/n
		{[]float64{2, 4, 4, 4, 5, 5, 7, 9}, 1600.0 / 1856.0}, // 40² / (8·232)
		{[]float64{5}, 1},
		{nil, math.NaN()},
		{[]float64{0, 0, 0}, math.NaN()},
	}
	for _, c := range cases {
		if got := Jain(c.xs); !near(got, c.want, 1e-12) {
			t.Errorf("Jain(%v) = %v, want %v", c.xs, got, c.want)
		}
	}
}

func TestCV(t *testing.T) {
	cases := []struct {
		xs   []float64
		want float64
	}{
		{[]float64{2, 4, 4, 4, 5, 5, 7, 9}, 0.4}, // mean 5, population sd 2
		{[]float64{3, 3}, 0},
		{[]float64{0, 10}, 1}, // mean 5, sd 5
		{[]float64{5}, 0},
		{nil, math.NaN()},
		{[]float64{0, 0}, math.NaN()},
	}
	for _, c := range cases {
		if got := CV(c.xs); !near(got, c.want, 1e-12) {
			t.Errorf("CV(%v) = %v, want %v", c.xs, got, c.want)
		}
	}
}

// Jain = 1/(1+CV²) holds for the population CV; the report relies on it
// to turn the binomial CV into a Jain figure.
func TestJainFromCV(t *testing.T) {
	for _, xs := range [][]float64{{2, 4, 4, 4, 5, 5, 7, 9}, {1, 2, 3}, {100, 1}, {7, 7, 8}} {
		cv := CV(xs)
		if got, want := Jain(xs), 1/(1+cv*cv); !near(got, want, 1e-12) {
			t.Errorf("%v: Jain %v, 1/(1+CV²) %v", xs, got, want)
		}
	}
}

func TestMaxMin(t *testing.T) {
	cases := []struct {
		xs   []float64
		want float64
	}{
		{[]float64{2, 8}, 4},
		{[]float64{8, 2, 4}, 4},
		{[]float64{7}, 1},
		{[]float64{0, 3}, math.Inf(1)},
		{[]float64{0, 0}, math.NaN()},
		{nil, math.NaN()},
	}
	for _, c := range cases {
		if got := MaxMin(c.xs); !near(got, c.want, 1e-12) {
			t.Errorf("MaxMin(%v) = %v, want %v", c.xs, got, c.want)
		}
	}
}

func TestPercentile(t *testing.T) {
	one10 := []float64{10, 9, 8, 7, 6, 5, 4, 3, 2, 1} // unsorted on purpose
	orig := slices.Clone(one10)
	cases := []struct {
		xs   []float64
		p    float64
		want float64
	}{
		{one10, 0, 1},
		{one10, 10, 1},
		{one10, 11, 2},
		{one10, 50, 5},
		{one10, 90, 9},
		{one10, 99, 10},
		{one10, 100, 10},
		{[]float64{1, 2, 3, 4}, 50, 2}, // lower middle, never interpolated
		{[]float64{3, 1, 2}, 50, 2},
		{[]float64{42}, 0, 42},
		{[]float64{42}, 50, 42},
		{[]float64{42}, 99, 42},
		{[]float64{0, 0, 0}, 99, 0},
		{nil, 50, 0},
		{[]float64{}, 99, 0},
	}
	for _, c := range cases {
		if got := Percentile(c.xs, c.p); got != c.want {
			t.Errorf("Percentile(%v, %v) = %v, want %v", c.xs, c.p, got, c.want)
		}
	}
	if !slices.Equal(one10, orig) {
		t.Errorf("Percentile modified its input: %v", one10)
	}

	hundred := make([]int64, 100)
	for i := range hundred {
		hundred[i] = int64(i + 1)
	}
	for p, want := range map[float64]int64{50: 50, 90: 90, 99: 99, 99.5: 100, 100: 100} {
		if got := PercentileSorted(hundred, p); got != want {
			t.Errorf("PercentileSorted(1..100, %v) = %d, want %d", p, got, want)
		}
	}
}

func TestMedian(t *testing.T) {
	if got := Median([]float64{5, 1, 3}); got != 3 {
		t.Errorf("Median = %v, want 3", got)
	}
	if got := Median(nil); !math.IsNaN(got) {
		t.Errorf("Median(nil) = %v, want NaN", got)
	}
}

func TestBinomialExpectation(t *testing.T) {
	// 64 flows over 2 workers: each count is Binomial(64, ½), sd 4 around
	// 32, so CV = 4/32; Jain = 64/65. The 95th-percentile bound uses
	// χ²₁(0.95) = 3.8415: 1/(1 + 3.8415/64).
	if got := ExpectedCV(64, 2); !near(got, 0.125, 1e-12) {
		t.Errorf("ExpectedCV(64,2) = %v", got)
	}
	if got := ExpectedJain(64, 2); !near(got, 64.0/65.0, 1e-12) {
		t.Errorf("ExpectedJain(64,2) = %v", got)
	}
	if got := JainP95(64, 2); !near(got, 0.94338, 1e-5) {
		t.Errorf("JainP95(64,2) = %v, want 0.94338", got)
	}
	// 20,000 flows over 2 workers (REFERENCES.md quotes 0.9998).
	if got := JainP95(20000, 2); !near(got, 0.99981, 1e-5) {
		t.Errorf("JainP95(20000,2) = %v, want 0.99981", got)
	}
	// 4 workers, 400 flows: CV = sqrt(3/400).
	if got := ExpectedCV(400, 4); !near(got, math.Sqrt(0.0075), 1e-12) {
		t.Errorf("ExpectedCV(400,4) = %v", got)
	}
	if got := JainP95(10, 1); got != 1 {
		t.Errorf("JainP95 with one worker = %v, want 1", got)
	}
	for _, f := range []func(int, int) float64{ExpectedCV, ExpectedJain, JainP95} {
		if got := f(0, 2); !math.IsNaN(got) {
			t.Errorf("no flows: %v, want NaN", got)
		}
	}
}

func TestChi2Q95(t *testing.T) {
	// Exact values from a χ² table; beyond the built-in table the
	// Wilson–Hilferty approximation must stay within 0.1%.
	exact := map[int]float64{1: 3.8415, 3: 7.8147, 15: 24.9958, 30: 43.7730, 100: 124.3421}
	for df, want := range exact {
		if got := chi2Q95(df); math.Abs(got-want)/want > 0.001 {
			t.Errorf("chi2Q95(%d) = %v, want %v", df, got, want)
		}
	}
}
