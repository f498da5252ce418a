package main

import (
	"math"
	"slices"
)

// median of xs (0 for none); the mean of the two middle values for an
// even count.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// percentile of sorted xs, p in [0, 100], by linear interpolation (as
// Postgres's percentile_cont).
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := p / 100 * float64(len(sorted)-1)
	lo := int(math.Floor(rank))
	hi := int(math.Ceil(rank))
	return sorted[lo] + (sorted[hi]-sorted[lo])*(rank-float64(lo))
}

// summarize returns the latency summary of xs (milliseconds).
func summarize(xs []float64) latencyMs {
	if len(xs) == 0 {
		return latencyMs{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	var sum float64
	for _, x := range s {
		sum += x
	}
	return latencyMs{Min: s[0], Mean: sum / float64(len(s)), P50: percentile(s, 50), P90: percentile(s, 90),
		P99: percentile(s, 99), P999: percentile(s, 99.9), Max: s[len(s)-1]}
}

// ratio a/b, 0 when b is 0.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// pluck maps runs to one figure each.
func pluck[T any](runs []T, f func(T) float64) []float64 {
	out := make([]float64, len(runs))
	for i, r := range runs {
		out[i] = f(r)
	}
	return out
}
