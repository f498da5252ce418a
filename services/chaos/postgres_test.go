package chaos

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/carteiro/carteiro/services/internal/stacktest"
)

// Scenario 3: Postgres stops during a burst of POSTs, then starts again →
// every answer is a 2xx or a 503 (the api answers within its
// DB_QUERY_TIMEOUT; no timeouts, no 502), every 2xx id exists and is sent,
// every 503 has no row, and the api recovers without a restart. A COMMIT
// the crash caught in flight is answered once Postgres is back and says
// whether it committed; only an outage longer than the api waits for that
// (statement_timeout + DB_QUERY_TIMEOUT) leaves a 500 "may or may not be
// stored", and those are the only rows stored without a 2xx.
func TestPostgresStoppedDuringBurst(t *testing.T) {
	const concurrency = 4
	rate := scale(100.0, 200.0)
	down := scale(3*time.Second, 10*time.Second)

	s := startStack(t, options{privatePostgres: true, env: map[string]string{
		"WORKER_CONCURRENCY": fmt.Sprint(concurrency),
		// Claims and outcomes that fail while Postgres is down leave
		// entries pending until the lease: keep it short.
		"WORKER_LEASE": "5s", "SMTP_TIMEOUT": "4s",
	}})
	apiPid, workerPid := s.PID("api"), s.PID("worker")

	l := newLoad(s, "postgres-stop", 32)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan struct{})
	go func() { l.paced(ctx, rate, 32); close(done) }()

	time.Sleep(time.Second)
	s.Postgres.Stop() // immediate shutdown, as a crash
	stoppedAt := time.Now()
	time.Sleep(down)
	s.Postgres.Start()
	startedAt := time.Now()
	note(t, "postgres-stop: Postgres down for %s", startedAt.Sub(stoppedAt).Round(time.Millisecond))

	// Post on until a request started after the restart is accepted: the
	// api's pool reconnects by itself.
	var recovered time.Duration
	for {
		for _, r := range l.snapshot() {
			if r.start.After(startedAt) && r.status/100 == 2 {
				recovered = r.start.Add(r.latency).Sub(startedAt)
			}
		}
		if recovered > 0 {
			break
		}
		if time.Since(startedAt) > time.Minute {
			t.Fatalf("no POST accepted within a minute of Postgres coming back (%s)\n%s", byStatus(l.snapshot()), s.Logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second)
	stop()
	<-done

	rs := l.snapshot()
	var slow []time.Duration
	var each []string
	for _, r := range rs {
		if r.status == http.StatusServiceUnavailable {
			slow = append(slow, r.latency)
			each = append(each, r.latency.Round(time.Millisecond).String())
		}
	}
	note(t, "postgres-stop: answers %s; first 2xx %s after the restart", byStatus(rs), recovered.Round(time.Millisecond))
	note(t, "postgres-stop: 503 latency %s", latencies(slow))
	t.Logf("postgres-stop: every 503's latency: %s", strings.Join(each, " "))
	var fs []result
	inDoubt := map[string]bool{}
	for _, r := range failures(rs) {
		if r.inDoubt {
			inDoubt[r.subject] = true
		} else {
			fs = append(fs, r)
		}
	}
	if len(fs) > 0 {
		t.Errorf("postgres-stop: %d POST(s) answered neither 2xx nor 503: %s\napi errors:\n%s",
			len(fs), describe(fs), strings.Join(s.ErrorLines("api"), "\n"))
	}
	if len(slow) == 0 {
		t.Errorf("postgres-stop: no 503 while Postgres was down (%s)", byStatus(rs))
	}

	// The same processes: nothing restarted them.
	for name, pid := range map[string]int{"api": apiPid, "worker": workerPid} {
		if !stacktest.Alive(pid) || s.PID(name) != pid {
			t.Errorf("%s (pid %d) did not survive the outage", name, pid)
		}
	}
	res, err := http.Get("http://" + s.APIInternal[0] + "/readyz")
	if err != nil {
		t.Errorf("api /readyz: %v", err)
	} else {
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Errorf("api /readyz after the restart: %d, want 200", res.StatusCode)
		}
	}

	ids := accepted(rs)
	// A send that finished while Postgres was down cannot be recorded; it
	// is sent again after the lease, with the same Message-ID: at most
	// one per send in flight.
	c := s.settle(expectation{name: "postgres-stop", ids: ids, maxDuplicates: concurrency})
	answered := map[string]int{}
	for _, r := range rs {
		answered[r.subject] = r.status
	}
	stored := 0
	for _, row := range c.rows {
		switch status := answered[row.subject]; {
		case status/100 == 2:
		case inDoubt[row.subject]:
			stored++
		default:
			t.Errorf("postgres-stop: %q is stored, but its answer was %d", row.subject, status)
		}
	}
	note(t, "postgres-stop: %d answer(s) in doubt (500), %d of them stored", len(inDoubt), stored)
}
