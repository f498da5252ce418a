package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/carteiro/carteiro/services/internal/testenv"
)

// Sizes of TestTailSamplingUnderLoad: 1,000 messages, one in ten refused
// once with a 451 (then accepted), one in twenty refused for good with a
// 550 (a dead letter); the rest go through. samplingRate paces the
// submissions so that the two shared cores deliver each message well
// within the 5 s objective, and senders is how many requests are in
// flight.
const (
	samplingMessages = 1000
	samplingPercent  = 10
	samplingRate     = 40 // messages per second
	samplingSenders  = 4
)

// samplingKind is what the scripted relay does with a message.
type samplingKind string

const (
	kindOK   samplingKind = "ok"   // accepted at once
	kindT451 samplingKind = "t451" // 451 once, then accepted
	kindP550 samplingKind = "p550" // 550: a dead letter
)

func samplingKindOf(i int) samplingKind {
	switch {
	case i%10 == 3:
		return kindT451
	case i%20 == 7:
		return kindP550
	}
	return kindOK
}

// jaegerSpans is the part of a Jaeger trace the sampling test reads: the
// spans' status tags and events.
type jaegerSpans struct {
	Spans []struct {
		OperationName string `json:"operationName"`
		ProcessID     string `json:"processID"`
		Tags          []struct {
			Key   string `json:"key"`
			Value any    `json:"value"`
		} `json:"tags"`
		Logs []struct {
			Fields []struct {
				Key   string `json:"key"`
				Value any    `json:"value"`
			} `json:"fields"`
		} `json:"logs"`
	} `json:"spans"`
	Processes map[string]struct {
		ServiceName string `json:"serviceName"`
	} `json:"processes"`
}

// errorSpans counts the spans in error (otel.status_code ERROR) and the
// dead-lettered events of a trace.
func (tr jaegerSpans) errorSpans() (errors, deadLettered int) {
	for _, sp := range tr.Spans {
		for _, tag := range sp.Tags {
			if tag.Key == "otel.status_code" && fmt.Sprint(tag.Value) == "ERROR" {
				errors++
			}
		}
		for _, l := range sp.Logs {
			for _, f := range l.Fields {
				if f.Key == "event" && fmt.Sprint(f.Value) == "dead-lettered" {
					deadLettered++
				}
			}
		}
	}
	return errors, deadLettered
}

// TestTailSamplingUnderLoad: the collector keeps 10 % of the ordinary
// traces (OTELCOL_SAMPLE_PERCENT=10) while 1,000 messages go through and
// the relay refuses a share of them (451 then accepted, 550 for good):
//   - every trace with an error, and every dead letter's trace, is in
//     Jaeger with its error spans (and the dead-lettered event);
//   - the ordinary traces kept are within 5 binomial standard deviations
//     of 10 % of those delivered within the objective (those that took
//     longer must all be kept, by the latency policy);
//   - the span metrics, computed before sampling, count every request:
//     the calls of the api's server span of POST /api/messages equal the
//     number of requests sent (the SMTP span counts retries, so it is not
//     the measure).
func TestTailSamplingUnderLoad(t *testing.T) {
	relay := testenv.StartSMTP(t)
	var mu sync.Mutex
	tries := map[string]int{} // by subject
	relay.ReplyFor(func(_ int, m *mail.Message) error {
		subject := m.Header.Get("Subject")
		mu.Lock()
		tries[subject]++
		n := tries[subject]
		mu.Unlock()
		switch kind, _, _ := strings.Cut(subject, " "); samplingKind(kind) {
		case kindT451:
			if n == 1 {
				return testenv.Error(451, "4.7.1 try again later")
			}
		case kindP550:
			return testenv.Error(550, "5.1.1 mailbox unavailable")
		}
		return nil
	})
	s := startStack(t, stackOptions{smtpAddr: relay.Addr, observability: true, extraEnv: map[string]string{
		"OTELCOL_SAMPLE_PERCENT": strconv.Itoa(samplingPercent),
	}})

	// Submit at a steady pace from a few senders.
	start := time.Now()
	next := make(chan int)
	var failed sync.Map
	var wg sync.WaitGroup
	for range samplingSenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				body := fmt.Sprintf(`{"assunto":"%s %d","mensagem":"amostragem pela cauda"}`, samplingKindOf(i), i)
				req, _ := http.NewRequest("POST", s.URL+"/api/messages", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Accept", "application/json")
				req.Header.Set("Origin", s.URL)
				res, err := client.Do(req)
				if err != nil {
					failed.Store(i, err.Error())
					continue
				}
				res.Body.Close()
				if res.StatusCode != http.StatusAccepted {
					failed.Store(i, res.Status)
				}
			}
		}()
	}
	tick := time.NewTicker(time.Second / samplingRate)
	for i := range samplingMessages {
		<-tick.C
		next <- i
	}
	tick.Stop()
	close(next)
	wg.Wait()
	failed.Range(func(k, v any) bool {
		t.Errorf("message %v: got %v, want 202", k, v)
		return true
	})
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d messages submitted in %s", samplingMessages, time.Since(start).Round(time.Millisecond))

	// Every message ends sent or dead.
	waitFor(t, 3*time.Minute, "every message sent or dead", func() bool {
		var open int
		s.queryRow(`SELECT count(*) FROM emails WHERE status NOT IN ('sent', 'dead')`, nil, &open)
		return open == 0
	}, s.logs)
	finished := time.Now()

	// Each message: its kind, trace id and delivery time.
	type msg struct {
		kind    samplingKind
		traceID string
		status  string
		latency time.Duration // accepted → sent
	}
	var msgs []msg
	conn, err := pgx.Connect(t.Context(), s.DB.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	rows, err := conn.Query(t.Context(), `SELECT assunto, traceparent, status,
		COALESCE(EXTRACT(EPOCH FROM sent_at - created_at), 0) FROM emails`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var assunto, traceparent, status string
		var seconds float64
		if err := rows.Scan(&assunto, &traceparent, &status, &seconds); err != nil {
			t.Fatal(err)
		}
		kind, _, _ := strings.Cut(assunto, " ")
		parts := strings.Split(traceparent, "-")
		if len(parts) != 4 {
			t.Fatalf("%s: traceparent %q, want a W3C traceparent", assunto, traceparent)
		}
		msgs = append(msgs, msg{samplingKind(kind), parts[1], status, time.Duration(seconds * float64(time.Second))})
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(msgs) != samplingMessages {
		t.Fatalf("stored messages: got %d, want %d", len(msgs), samplingMessages)
	}

	// The errors and dead letters: every one is kept, with its error spans.
	var errorTraces, deadTraces int
	for _, m := range msgs {
		if m.kind == kindOK {
			continue
		}
		wantStatus := map[samplingKind]string{kindT451: "sent", kindP550: "dead"}[m.kind]
		if m.status != wantStatus {
			t.Errorf("%s message (trace %s): status %s, want %s", m.kind, m.traceID, m.status, wantStatus)
		}
		var tr jaegerSpans
		waitFor(t, 2*time.Minute, fmt.Sprintf("the %s trace %s in Jaeger", m.kind, m.traceID), func() bool {
			var out struct{ Data []jaegerSpans }
			if s.getJSON(s.Jaeger+"/api/traces/"+m.traceID, &out) != http.StatusOK || len(out.Data) != 1 {
				return false
			}
			tr = out.Data[0]
			errs, dead := tr.errorSpans()
			return errs > 0 && (m.kind != kindP550 || dead > 0)
		}, func() string { return s.LogText("otelcol") })
		errorTraces++
		if m.kind == kindP550 {
			deadTraces++
		}
	}

	// The ordinary traces: decided OTELCOL_DECISION_WAIT (30 s) after
	// their first span, which came before finished.
	if wait := time.Until(finished.Add(30*time.Second + 10*time.Second)); wait > 0 {
		time.Sleep(wait)
	}
	kept := func(traceID string) bool {
		var out struct{ Data []jaegerSpans }
		return s.getJSON(s.Jaeger+"/api/traces/"+traceID, &out) == http.StatusOK && len(out.Data) == 1
	}
	var population, keptOK, slow, keptSlow int
	for _, m := range msgs {
		if m.kind != kindOK {
			continue
		}
		if m.status != "sent" {
			t.Errorf("ok message (trace %s): status %s, want sent", m.traceID, m.status)
			continue
		}
		switch {
		case m.latency < 4*time.Second: // well within the objective
			population++
			if kept(m.traceID) {
				keptOK++
			}
		case m.latency > 6*time.Second && m.latency < 20*time.Second: // over it, and whole at the decision
			slow++
			if kept(m.traceID) {
				keptSlow++
			}
		}
	}
	if keptSlow != slow {
		t.Errorf("ordinary traces over the 5 s objective: %d of %d kept, want all (the latency policy)", keptSlow, slow)
	}
	if population < samplingMessages/2 {
		t.Fatalf("ordinary messages delivered within 4 s: %d, want at least %d for the count to mean something (the machine is too loaded for samplingRate)", population, samplingMessages/2)
	}
	p := float64(samplingPercent) / 100
	mean := p * float64(population)
	sd := math.Sqrt(float64(population) * p * (1 - p))
	if dev := math.Abs(float64(keptOK) - mean); dev > 5*sd {
		t.Errorf("ordinary traces kept: %d of %d, want %.0f ± %.0f (5 binomial standard deviations of %d %%)", keptOK, population, mean, 5*sd, samplingPercent)
	}

	// Span metrics count every request, sampled or not.
	calls := `sum(traces_span_metrics_calls_total{service_name="carteiro-api", span_name="POST /api/messages", span_kind="SPAN_KIND_SERVER"})`
	var got float64
	waitFor(t, time.Minute, "span metrics counting every request", func() bool {
		got = s.promValue(calls)
		return got >= samplingMessages
	}, func() string { return fmt.Sprintf("%s = %v\n", calls, got) })
	if got != samplingMessages {
		t.Errorf("%s: got %v, want %d (one per request)", calls, got, samplingMessages)
	}
	t.Logf("traces with an error in Jaeger: %d, all of them (%d dead letters); ordinary traces kept: %d of %d delivered within 4 s (expected %.0f ± %.0f), %d of %d over 6 s; span metrics counted %v requests",
		errorTraces, deadTraces, keptOK, population, mean, 5*sd, keptSlow, slow, got)
}

// promValue is the value of an instant query with one series (0 when it
// has none).
func (s *stack) promValue(expr string) float64 {
	s.t.Helper()
	series := s.promQuery(expr)
	if len(series) == 0 {
		return 0
	}
	var one struct {
		Value [2]any `json:"value"`
	}
	if err := json.Unmarshal(series[0], &one); err != nil {
		s.t.Fatalf("query %s: %v", expr, err)
	}
	v, _ := one.Value[1].(string)
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		s.t.Fatalf("query %s: value %v: %v", expr, one.Value[1], err)
	}
	return f
}
