package delivery

import (
	"math/rand/v2"
	"time"
)

// Backoff returns how long to wait before attempt number attempt+1, after
// attempt failed: base doubled for every earlier attempt, capped at limit,
// then jittered into [d/2, d) so that messages that failed together do not
// come back together. jitter returns a value in [0, 1); nil uses math/rand.
func Backoff(attempt int, base, limit time.Duration, jitter func() float64) time.Duration {
	if jitter == nil {
		jitter = rand.Float64
	}
	d := base
	for i := 1; i < attempt && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	return d/2 + time.Duration(jitter()*float64(d/2))
}
