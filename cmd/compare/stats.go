package main

import (
	"cmp"
	"math"
	"slices"
)

// The statistics below return NaN where a figure is undefined (no values,
// or 0/0 when every value is zero) rather than inventing a value; the
// report prints NaN as "–" and the JSON as null.

// Jain returns Jain's fairness index (Σx)² / (n·Σx²): 1 when every value
// is equal, 1/n when one value holds everything. It equals 1/(1+CV²) with
// the population CV.
func Jain(xs []float64) float64 {
	var sum, sq float64
	for _, x := range xs {
		sum += x
		sq += x * x
	}
	if len(xs) == 0 || sq == 0 {
		return math.NaN()
	}
	return sum * sum / (float64(len(xs)) * sq)
}

// CV returns the coefficient of variation, the population standard
// deviation over the mean. Population, not sample: the binomial
// expectation for reuseport (ExpectedCV) and Jain = 1/(1+CV²) use it.
func CV(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	var sum float64
	for _, x := range xs {
		sum += x
	}
	mean := sum / float64(len(xs))
	if mean == 0 {
		return math.NaN()
	}
	var ss float64
	for _, x := range xs {
		ss += (x - mean) * (x - mean)
	}
	return math.Sqrt(ss/float64(len(xs))) / mean
}

// MaxMin returns max/min: 1 when every value is equal, +Inf when some
// value is zero and another is not.
func MaxMin(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	lo, hi := slices.Min(xs), slices.Max(xs)
	if hi == 0 {
		return math.NaN()
	}
	return hi / lo // lo == 0 gives +Inf
}

// Percentile returns the p-th percentile (0..100) of xs by the
// nearest-rank method: the smallest value with at least p% of the values
// at or below it. It never interpolates, so it is always a value that was
// observed; the median of an even count is the lower middle value. xs need
// not be sorted and is not modified. The zero value of T is returned for
// an empty xs.
func Percentile[T cmp.Ordered](xs []T, p float64) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	return PercentileSorted(s, p)
}

// PercentileSorted is Percentile for xs already sorted ascending.
func PercentileSorted[T cmp.Ordered](xs []T, p float64) T {
	var zero T
	n := len(xs)
	if n == 0 {
		return zero
	}
	p = min(max(p, 0), 100)
	rank := int(math.Ceil(p / 100 * float64(n)))
	if rank < 1 {
		rank = 1
	}
	return xs[rank-1]
}

// Median is Percentile(xs, 50), for float64 values; NaN when xs is empty.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	return Percentile(xs, 50)
}

// ExpectedCV is the coefficient of variation of the per-worker counts
// when n independent flows each pick one of k workers uniformly (what
// SO_REUSEPORT's 4-tuple hash approximates): each count is
// Binomial(n, 1/k), so CV² = (k−1)/n.
func ExpectedCV(n, k int) float64 {
	if n <= 0 || k <= 0 {
		return math.NaN()
	}
	return math.Sqrt(float64(k-1) / float64(n))
}

// ExpectedJain is the Jain index that ExpectedCV corresponds to,
// 1/(1+(k−1)/n) = n/(n+k−1).
func ExpectedJain(n, k int) float64 {
	if n <= 0 || k <= 0 {
		return math.NaN()
	}
	return float64(n) / float64(n+k-1)
}

// JainP95 is the Jain index that 95% of uniform random assignments of n
// flows to k workers reach or beat. n·CV² is Pearson's χ² statistic of the
// counts, so the 95th percentile of χ² with k−1 degrees of freedom bounds
// CV² from above.
func JainP95(n, k int) float64 {
	if n <= 0 || k <= 0 {
		return math.NaN()
	}
	if k == 1 {
		return 1
	}
	return 1 / (1 + chi2Q95(k-1)/float64(n))
}

// chi2Q95 is the 95th percentile of the χ² distribution with df degrees
// of freedom: from a table for small df, else by the Wilson–Hilferty
// approximation (within 0.1% there).
func chi2Q95(df int) float64 {
	table := [...]float64{0, 3.8415, 5.9915, 7.8147, 9.4877, 11.0705, 12.5916, 14.0671, 15.5073, 16.9190, 18.3070}
	if df < len(table) {
		return table[df]
	}
	const z = 1.6449 // standard normal 95th percentile
	v := float64(df)
	a := 2 / (9 * v)
	t := 1 - a + z*math.Sqrt(a)
	return v * t * t * t
}
