package chaos

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/carteiro/carteiro/services/internal/testenv"
)

// Scenario 5: two api processes behind one nginx upstream and three
// workers in the consumer group, no faults → every message sent exactly
// once.
func TestScaleOut(t *testing.T) {
	n := scale(1000, 10000)
	const conns = 32

	smtp := testenv.StartSMTP(t)
	s := startStack(t, options{smtp: smtp, apis: 2, workers: 3, env: map[string]string{
		"LOG_LEVEL": "warn",
	}})

	l := newLoad(s, "scale", conns)
	start := time.Now()
	l.burst(context.Background(), n, conns)
	posted := time.Since(start)
	rs := l.snapshot()
	if fs := failures(rs); len(fs) > 0 {
		t.Fatalf("scale: %d POST(s) failed: %s", len(fs), describe(fs))
	}
	var lat []time.Duration
	for _, r := range rs {
		lat = append(lat, r.latency)
	}
	ids := accepted(rs)
	if len(ids) != n {
		t.Errorf("scale: %d of %d POSTs accepted (%s)", len(ids), n, byStatus(rs))
	}
	c := s.settle(expectation{name: "scale", ids: ids, maxDuplicates: 0})
	all := time.Since(start)
	_ = c

	note(t, "scale: %d POSTs in %s (%.0f/s, %d connections), all sent after %s (%.0f/s); POST latency %s",
		n, posted.Round(time.Millisecond), float64(n)/posted.Seconds(), conns,
		all.Round(time.Millisecond), float64(n)/all.Seconds(), latencies(lat))
	var perAPI, perWorker []string
	for i, addr := range s.APIInternal {
		v, err := testenv.Metric(addr, "carteiro_messages_accepted_total")
		if err != nil {
			t.Errorf("api %d metrics: %v", i+1, err)
		}
		perAPI = append(perAPI, fmt.Sprint(v))
		if v <= 0 {
			t.Errorf("api %d accepted no message: nginx did not balance over the upstream", i+1)
		}
	}
	for i, addr := range s.WorkerInternal {
		v, err := testenv.Metric(addr, `carteiro_messages_total{outcome="sent"}`)
		if err != nil {
			t.Logf("worker %d metrics: %v", i+1, err)
		}
		perWorker = append(perWorker, fmt.Sprint(v))
	}
	note(t, "scale: accepted per api %s; sent per worker %s", strings.Join(perAPI, "/"), strings.Join(perWorker, "/"))
}
