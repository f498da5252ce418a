package chaos

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/carteiro/carteiro/services/internal/stacktest"
)

// Scenario 7: a steady rate for SOAK_DURATION (default 1m; `make soak
// DURATION=10m`) at SOAK_RATE messages per second (default 20) through
// nginx to Mailpit → accepted == sent, no error answer and no error logged,
// and the RSS of the api and the worker printed at the start and the end
// (memory should stay flat; it is printed, not asserted).
func TestSoak(t *testing.T) {
	duration := time.Minute
	if v := os.Getenv("SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("SOAK_DURATION=%q: want a duration such as 10m", v)
		}
		duration = d
	}
	rate := 20.0
	if v := os.Getenv("SOAK_RATE"); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r <= 0 {
			t.Fatalf("SOAK_RATE=%q: want messages per second", v)
		}
		rate = r
	}

	s := startStack(t, options{})
	apiPid, workerPid := s.PID("api"), s.PID("worker")
	apiStart, workerStart := stacktest.RSS(apiPid), stacktest.RSS(workerPid)
	note(t, "soak: %s at %.0f msg/s; RSS at start: api %d KiB, worker %d KiB", duration, rate, apiStart, workerStart)

	l := newLoad(s, "soak", 8)
	ctx, stop := context.WithTimeout(context.Background(), duration)
	defer stop()
	start := time.Now()
	// RSS halfway too, to tell growth from warm-up.
	mid := make(chan [2]int, 1)
	go func() {
		select {
		case <-time.After(duration / 2):
			mid <- [2]int{stacktest.RSS(apiPid), stacktest.RSS(workerPid)}
		case <-ctx.Done():
			mid <- [2]int{}
		}
	}()
	l.paced(ctx, rate, 8)
	elapsed := time.Since(start)
	half := <-mid
	apiMid, workerMid := half[0], half[1]

	rs := l.snapshot()
	var lat []time.Duration
	var bad []result
	for _, r := range rs {
		lat = append(lat, r.latency)
		if r.err != nil || r.status/100 != 2 {
			bad = append(bad, r)
		}
	}
	if len(bad) > 0 {
		t.Errorf("soak: %d POST(s) not accepted (%s): %s", len(bad), byStatus(rs), describe(bad))
	}
	ids := accepted(rs)
	s.settle(expectation{name: "soak", ids: ids})
	apiEnd, workerEnd := stacktest.RSS(apiPid), stacktest.RSS(workerPid)
	note(t, "soak: %d POSTs in %s (%.1f/s); POST latency %s", len(rs), elapsed.Round(time.Millisecond),
		float64(len(rs))/elapsed.Seconds(), latencies(lat))
	note(t, "soak: RSS api %d → %d → %d KiB, worker %d → %d → %d KiB (start → half → end)",
		apiStart, apiMid, apiEnd, workerStart, workerMid, workerEnd)

	for name, pid := range map[string]int{"api": apiPid, "worker": workerPid} {
		if !stacktest.Alive(pid) || s.PID(name) != pid {
			t.Errorf("soak: %s (pid %d) did not run the whole soak", name, pid)
		}
		if errs := s.ErrorLines(name); len(errs) > 0 {
			t.Errorf("soak: %d error(s) in the %s log, e.g. %s", len(errs), name, errs[0])
		}
	}
}
