package main

import (
	"slices"
	"testing"
)

func TestRatioByRound(t *testing.T) {
	drains := []deliveryRun{{Round: 1, Rate: 100}, {Round: 2, Rate: 90}, {Round: 3, Rate: 80}}
	for _, tc := range []struct {
		name     string
		ceilings []smtpRun
		want     []float64
	}{
		{"each round its own ceiling", []smtpRun{{Round: 3, Rate: 160}, {Round: 1, Rate: 200}, {Round: 2, Rate: 100}}, []float64{0.5, 0.9, 0.5}},
		{"a round without a ceiling left out", []smtpRun{{Round: 1, Rate: 200}, {Round: 3, Rate: 0}}, []float64{0.5}},
		{"no ceilings", nil, nil},
	} {
		if got := ratioByRound(drains, tc.ceilings); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}
