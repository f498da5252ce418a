package chaos

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/carteiro/carteiro/services/internal/testenv"
)

// Scenario: a rolling restart. Two apis behind nginx; under a steady load
// of POSTs one is stopped (SIGTERM, as an orchestrator does) and started
// again → no 5xx, nor any answer but 202; every 202's message is stored
// and delivered once. The stopping api fails its readiness, closes its
// listener (nginx passes a new connection to the other api: the request
// never reached this one), answers on the connections it has with
// "Connection: close" until nginx let go of them all, and finishes what is
// in flight (services/api/drain.go).
func TestAPIRestartUnderLoad(t *testing.T) {
	const conns = 16
	rate := scale(100.0, 300.0)

	smtp := testenv.StartSMTP(t)
	s := startStack(t, options{smtp: smtp, apis: 2, env: map[string]string{"LOG_LEVEL": "info"}})

	l := newLoad(s, "api-restart", conns)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan struct{})
	go func() { l.paced(ctx, rate, conns); close(done) }()

	// A steady state first: nginx's keep-alive pool holds connections to
	// both apis.
	waitAccepted := func(api int) {
		for range 600 {
			if v, err := testenv.Metric(s.APIInternal[api], "carteiro_messages_accepted_total"); err == nil && v > 0 {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("api %d accepted nothing within a minute (%s)\n%s", api+1, byStatus(l.snapshot()), s.Logs())
	}
	waitAccepted(0)
	waitAccepted(1)
	time.Sleep(time.Second)

	s.Stop("api-2")
	if code := s.ExitStatus("api-2", time.Minute); code != 0 {
		t.Errorf("api-2 exit status after SIGTERM: got %d, want 0", code)
	}
	s.Up()
	// The new process is counted from zero: post on until nginx sends it
	// work again (after its fail_timeout for the refused connection).
	waitAccepted(1)
	time.Sleep(time.Second)
	stop()
	<-done

	rs := l.snapshot()
	note(t, "api-restart: answers %s", byStatus(rs))
	var bad []result
	for _, r := range rs {
		if r.err != nil || r.status != http.StatusAccepted {
			bad = append(bad, r)
		}
	}
	if len(bad) > 0 {
		t.Errorf("api-restart: %d of %d POST(s) not answered 202: %s\nnginx errors:\n%s", len(bad), len(rs), describe(bad),
			strings.Join(lastLines(s.LogText("nginx"), "[error]", 10), "\n"))
	}
	// The stopped api drained: nginx had let go of every connection
	// before the api closed what was left.
	drained := lastLines(s.LogText("api-2"), `"msg":"drained"`, 2)
	if len(drained) == 0 || !strings.Contains(drained[0], `"connections_left":0`) {
		t.Errorf("api-2 did not drain to zero connections: %q", drained)
	}
	s.settle(expectation{name: "api-restart", ids: accepted(rs), maxDuplicates: 0})
}

// lastLines returns the last n lines of text that contain s.
func lastLines(text, s string, n int) []string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}
