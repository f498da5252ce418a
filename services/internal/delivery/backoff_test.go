package delivery

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	base, limit := time.Second, 10*time.Second
	tests := []struct {
		attempt int
		jitter  float64
		want    time.Duration
	}{
		{1, 0, 500 * time.Millisecond},
		{1, 0.999999, time.Second - time.Microsecond},
		{2, 0, time.Second},
		{3, 0, 2 * time.Second},
		{4, 0.5, 6 * time.Second},
		{5, 0, 5 * time.Second},  // 16s capped to 10s, halved
		{50, 0, 5 * time.Second}, // no overflow however many attempts
	}
	for _, tt := range tests {
		got := Backoff(tt.attempt, base, limit, func() float64 { return tt.jitter })
		if diff := got - tt.want; diff < -time.Microsecond || diff > time.Microsecond {
			t.Errorf("attempt %d jitter %v: got %v, want %v", tt.attempt, tt.jitter, got, tt.want)
		}
	}
}

func TestBackoffJitterStaysInRange(t *testing.T) {
	for attempt := 1; attempt <= 8; attempt++ {
		for range 100 {
			d := Backoff(attempt, 100*time.Millisecond, time.Second, nil)
			if d < 50*time.Millisecond || d >= time.Second {
				t.Fatalf("attempt %d: got %v, want within [50ms, 1s)", attempt, d)
			}
		}
	}
}
