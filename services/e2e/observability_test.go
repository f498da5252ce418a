package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/carteiro/carteiro/services/internal/promrules"
)

// jaegerTrace is the part of Jaeger's query API answer the test reads.
type jaegerTrace struct {
	TraceID string `json:"traceID"`
	Spans   []struct {
		SpanID        string `json:"spanID"`
		OperationName string `json:"operationName"`
		ProcessID     string `json:"processID"`
		References    []struct {
			RefType string `json:"refType"`
			TraceID string `json:"traceID"`
			SpanID  string `json:"spanID"`
		} `json:"references"`
	} `json:"spans"`
	Processes map[string]struct {
		ServiceName string `json:"serviceName"`
	} `json:"processes"`
}

func (s *stack) getJSON(rawURL string, v any) int {
	s.t.Helper()
	res, err := client.Get(rawURL)
	if err != nil {
		s.t.Fatalf("GET %s: %v", rawURL, err)
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusOK {
		if err := json.NewDecoder(res.Body).Decode(v); err != nil {
			s.t.Fatalf("GET %s: %v", rawURL, err)
		}
	}
	return res.StatusCode
}

// trace fetches one trace from Jaeger.
func (s *stack) trace(id string) []jaegerTrace {
	var out struct{ Data []jaegerTrace }
	s.getJSON(s.Jaeger+"/api/traces/"+id, &out)
	return out.Data
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// accepted is what a 202 says of the message and its trace.
type accepted struct{ ID, TraceID, TraceURL string }

// submitTraced posts a message with the caller's traceparent (none when
// empty) and returns the 202's answer; X-Trace-Id must name the same trace
// as the body.
func (s *stack) submitTraced(assunto, traceparent string) accepted {
	s.t.Helper()
	headers := []string{"Accept", "application/json"}
	if traceparent != "" {
		headers = append(headers, "traceparent", traceparent)
	}
	res, out := s.request("POST", "/api/messages", "application/json", jsonBody(assunto, "seguindo o rastro"), headers...)
	if res.StatusCode != http.StatusAccepted {
		s.t.Fatalf("submit: got %d (%s)", res.StatusCode, out)
	}
	var acc accepted
	json.Unmarshal([]byte(out), &struct {
		ID       *string `json:"id"`
		TraceID  *string `json:"trace_id"`
		TraceURL *string `json:"trace_url"`
	}{&acc.ID, &acc.TraceID, &acc.TraceURL})
	if len(acc.TraceID) != 32 || res.Header.Get("X-Trace-Id") != acc.TraceID {
		s.t.Errorf("trace id in the answer: got body %q header %q, want the same trace id", acc.TraceID, res.Header.Get("X-Trace-Id"))
	}
	return acc
}

// One message, one trace: from the api's HTTP span through Postgres and
// the stream to the worker's SMTP span, in Jaeger; the caller's trace is
// linked, not joined; and every dashboard and alert expression answers
// from Prometheus after the traffic.
func TestOneTraceFromRequestToInbox(t *testing.T) {
	s := startStack(t, stackOptions{observability: true})

	type sent struct{ id, traceID, callerTrace, callerSpan string }
	var msgs []sent
	for i := range 3 {
		callerTrace, callerSpan := randomHex(16), randomHex(8)
		acc := s.submitTraced(fmt.Sprintf("trace %d", i), "00-"+callerTrace+"-"+callerSpan+"-01")
		if acc.TraceID == callerTrace {
			t.Errorf("trace id in the answer: got the caller's %s, want a trace of carteiro's own", callerTrace)
		}
		if acc.TraceURL != s.Jaeger+"/trace/"+acc.TraceID {
			t.Errorf("trace_url: got %q, want %q", acc.TraceURL, s.Jaeger+"/trace/"+acc.TraceID)
		}
		msgs = append(msgs, sent{acc.ID, acc.TraceID, callerTrace, callerSpan})
	}
	// Some refused requests, so the error panels have something to show.
	for range 2 {
		s.request("POST", "/api/messages", "application/json", `{}`, "Accept", "application/json")
	}
	for _, m := range msgs {
		s.waitStatus(m.id, "sent")
	}

	wantSpans := map[string][]string{
		"carteiro-api": {"POST /api/messages", "INSERT", "send emails"},
		// The worker's claims, outcome writes and acknowledgements act on
		// batches: their spans link to each message's process span
		// (services/worker's tracing test holds them to it).
		"carteiro-worker": {"process emails", "smtp send"},
	}
	for _, m := range msgs {
		var tr jaegerTrace
		waitUntil(t, "the whole trace "+m.traceID+" in Jaeger", func() bool {
			traces := s.trace(m.traceID)
			if len(traces) != 1 {
				return false
			}
			tr = traces[0]
			return hasSpans(tr, wantSpans)
		})
		if tr.TraceID != m.traceID {
			t.Errorf("trace id: got %s, want %s", tr.TraceID, m.traceID)
		}
		// The api's server span links the caller's span (Jaeger shows a
		// link as a FOLLOWS_FROM reference into the other trace).
		if !linksTo(tr, spanID(tr, "carteiro-api", "POST /api/messages"), m.callerTrace, m.callerSpan) {
			t.Errorf("trace %s: the server span does not link the caller's span %s/%s", m.traceID, m.callerTrace, m.callerSpan)
		}
		if len(s.trace(m.callerTrace)) != 0 {
			t.Errorf("caller's trace %s: in Jaeger, want carteiro to have recorded nothing in it", m.callerTrace)
		}
		// The worker's span descends from the api's server span.
		server, process := spanID(tr, "carteiro-api", "POST /api/messages"), spanID(tr, "carteiro-worker", "process emails")
		if !descends(tr, process, server) {
			t.Errorf("trace %s: the worker's process span does not descend from the api's server span", m.traceID)
		}
	}
	// A search by service finds them too.
	var found struct{ Data []jaegerTrace }
	s.getJSON(s.Jaeger+"/api/traces?service=carteiro-worker&limit=100&lookback=1h", &found)
	seen := map[string]bool{}
	for _, tr := range found.Data {
		seen[tr.TraceID] = true
	}
	for _, m := range msgs {
		if !seen[m.traceID] {
			t.Errorf("search by service carteiro-worker: trace %s missing", m.traceID)
		}
	}

	t.Run("every dashboard and alert expression has data", func(t *testing.T) {
		for _, q := range expressions(t) {
			expr := s.resolveVariables(q)
			waitUntil(t, fmt.Sprintf("data for %s (%s)", expr, q.where), func() bool {
				return len(s.promQuery(expr)) > 0
			})
		}
	})

	// Every job of the native scrape configuration answers: the
	// collector's own metrics (otelcol-telemetry) included, without which
	// CarteiroTracesDroppedTooEarly is blind.
	t.Run("every scrape job is up", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(repoRoot(t), "observability", "prometheus", "prometheus.native.yml.template"))
		if err != nil {
			t.Fatal(err)
		}
		jobs := regexp.MustCompile(`(?m)^\s*- job_name: (\S+)$`).FindAllStringSubmatch(string(b), -1)
		if len(jobs) == 0 {
			t.Fatal("prometheus.native.yml.template: no job_name")
		}
		for _, m := range jobs {
			waitUntil(t, "up{job="+strconv.Quote(m[1])+"} == 1", func() bool {
				return len(s.promQuery(`up{job="`+m[1]+`"} == 1`)) > 0
			})
		}
	})

	t.Run("exemplars lead to traces in Jaeger", func(t *testing.T) {
		for _, metric := range []string{"carteiro_delivery_latency_seconds_bucket", "carteiro_send_duration_seconds_bucket", "carteiro_http_request_duration_seconds_bucket"} {
			var ids []string
			waitUntil(t, "exemplars of "+metric, func() bool {
				ids = s.exemplarTraceIDs(metric)
				return len(ids) > 0
			})
			for _, id := range ids {
				if len(s.trace(id)) != 1 {
					t.Errorf("%s: exemplar trace %s not in Jaeger", metric, id)
				}
			}
		}
	})
}

// Only requests and deliveries make traces: a stack that starts and then
// idles for 30 s (readiness probes, pool warm-up, Prometheus scraping every
// second, the outbox relay's sweeps, the worker's polls) leaves no trace in
// Jaeger, and one POST adds exactly one, even when the caller's
// traceparent says not to record (carteiro decides, not the caller).
func TestOnlyRequestsMakeTraces(t *testing.T) {
	s := startStack(t, stackOptions{observability: true})
	time.Sleep(30 * time.Second)
	if traces := s.carteiroTraces(); len(traces) != 0 {
		t.Errorf("idle stack: got %d traces, want none: %v", len(traces), traces)
	}

	acc := s.submitTraced("um só rastro", "00-"+randomHex(16)+"-"+randomHex(8)+"-00")
	// Watched in Postgres: a GET of its status would be a request, and a
	// trace, of its own.
	waitUntil(t, "message "+acc.ID+" sent", func() bool {
		var status string
		s.queryRow("SELECT status FROM emails WHERE id = $1", []any{acc.ID}, &status)
		return status == "sent"
	})
	waitUntil(t, "the whole trace "+acc.TraceID+" in Jaeger", func() bool {
		traces := s.trace(acc.TraceID)
		return len(traces) == 1 && hasSpans(traces[0], map[string][]string{
			"carteiro-api":    {"POST /api/messages", "INSERT", "send emails"},
			"carteiro-worker": {"process emails", "smtp send"},
		})
	})
	// Spans leave in batches, up to five seconds apart: wait out one more
	// so a stray span exported after the request's would be seen.
	time.Sleep(7 * time.Second)
	traces := s.carteiroTraces()
	if _, ok := traces[acc.TraceID]; len(traces) != 1 || !ok {
		t.Errorf("after one POST: got traces %v, want only %s", traces, acc.TraceID)
	}
}

// carteiroTraces lists every trace in Jaeger that has a span of a carteiro
// service, with the names of its spans that have no parent in it.
func (s *stack) carteiroTraces() map[string][]string {
	s.t.Helper()
	var services struct{ Data []string }
	if code := s.getJSON(s.Jaeger+"/api/services", &services); code != http.StatusOK {
		s.t.Fatalf("Jaeger /api/services: HTTP %d", code)
	}
	out := map[string][]string{}
	for _, svc := range services.Data {
		if !strings.HasPrefix(svc, "carteiro") {
			continue
		}
		var found struct{ Data []jaegerTrace }
		q := url.Values{"service": {svc}, "lookback": {"1h"}, "limit": {"1000"}}
		if code := s.getJSON(s.Jaeger+"/api/traces?"+q.Encode(), &found); code != http.StatusOK {
			s.t.Fatalf("Jaeger traces of %s: HTTP %d", svc, code)
		}
		for _, tr := range found.Data {
			inTrace := map[string]bool{}
			for _, sp := range tr.Spans {
				inTrace[sp.SpanID] = true
			}
			var roots []string
			for _, sp := range tr.Spans {
				root := true
				for _, r := range sp.References {
					if r.TraceID == tr.TraceID && inTrace[r.SpanID] {
						root = false
					}
				}
				if root {
					roots = append(roots, tr.Processes[sp.ProcessID].ServiceName+"/"+sp.OperationName)
				}
			}
			out[tr.TraceID] = roots
		}
	}
	return out
}

// linksTo reports whether span id refers to span spanID of trace traceID.
func linksTo(tr jaegerTrace, id, traceID, spanID string) bool {
	for _, sp := range tr.Spans {
		if sp.SpanID != id {
			continue
		}
		for _, r := range sp.References {
			if r.TraceID == traceID && r.SpanID == spanID {
				return true
			}
		}
	}
	return false
}

func hasSpans(tr jaegerTrace, want map[string][]string) bool {
	have := map[string]bool{}
	for _, sp := range tr.Spans {
		have[tr.Processes[sp.ProcessID].ServiceName+"/"+sp.OperationName] = true
	}
	for service, names := range want {
		for _, n := range names {
			if !have[service+"/"+n] {
				return false
			}
		}
	}
	return true
}

func spanID(tr jaegerTrace, service, name string) string {
	for _, sp := range tr.Spans {
		if sp.OperationName == name && tr.Processes[sp.ProcessID].ServiceName == service {
			return sp.SpanID
		}
	}
	return ""
}

// descends reports whether span id has ancestor up its chain of
// references. Jaeger shows the consumer span's parent as FOLLOWS_FROM,
// because the span also links to its parent (one reference per span).
func descends(tr jaegerTrace, id, ancestor string) bool {
	parent := map[string]string{}
	for _, sp := range tr.Spans {
		for _, r := range sp.References {
			if r.RefType == "CHILD_OF" || r.RefType == "FOLLOWS_FROM" {
				parent[sp.SpanID] = r.SpanID
			}
		}
	}
	for cur, steps := id, 0; cur != "" && steps < 100; cur, steps = parent[cur], steps+1 {
		if cur == ancestor {
			return true
		}
	}
	return false
}

// promQuery evaluates an instant query and returns its result series.
func (s *stack) promQuery(expr string) []json.RawMessage {
	s.t.Helper()
	var out struct {
		Status string
		Error  string
		Data   struct {
			ResultType string
			Result     json.RawMessage
		}
	}
	code := s.getJSON(s.Prometheus+"/api/v1/query?query="+url.QueryEscape(expr), &out)
	if code != http.StatusOK || out.Status != "success" {
		s.t.Fatalf("query %s: HTTP %d %s", expr, code, out.Error)
	}
	var series []json.RawMessage
	if out.Data.ResultType == "scalar" {
		return []json.RawMessage{out.Data.Result}
	}
	json.Unmarshal(out.Data.Result, &series)
	return series
}

// exemplarTraceIDs returns the trace ids of the exemplars of a metric over
// the last ten minutes.
func (s *stack) exemplarTraceIDs(metric string) []string {
	now := time.Now()
	q := url.Values{"query": {metric},
		"start": {strconv.FormatInt(now.Add(-10*time.Minute).Unix(), 10)}, "end": {strconv.FormatInt(now.Unix(), 10)}}
	var out struct {
		Data []struct {
			Exemplars []struct {
				Labels map[string]string
			}
		}
	}
	s.getJSON(s.Prometheus+"/api/v1/query_exemplars?"+q.Encode(), &out)
	var ids []string
	for _, d := range out.Data {
		for _, e := range d.Exemplars {
			if id := e.Labels["trace_id"]; id != "" {
				ids = append(ids, id)
			}
		}
	}
	return ids
}

// promExpr is one expression to evaluate, where it comes from, and the
// dashboard variables it may use (name → label_values query).
type promExpr struct {
	expr, where string
	variables   map[string]string
}

// labelValuesRe is a dashboard variable's query: label_values(metric, label).
var labelValuesRe = regexp.MustCompile(`^label_values\(\s*(.+?)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$`)

// resolveVariables replaces the dashboard variables of q with the values
// Grafana would offer: the label's values on the metric's series in
// Prometheus (waited for; a regular expression of them all when several).
func (s *stack) resolveVariables(q promExpr) string {
	s.t.Helper()
	expr := q.expr
	for name, query := range q.variables {
		if !strings.Contains(expr, "$"+name) && !strings.Contains(expr, "${"+name+"}") {
			continue
		}
		m := labelValuesRe.FindStringSubmatch(query)
		if m == nil {
			s.t.Fatalf("%s: variable %s: got query %q, want label_values(metric, label)", q.where, name, query)
		}
		var values []string
		waitUntil(s.t, fmt.Sprintf("values of variable %s (%s)", name, query), func() bool {
			var out struct{ Data []string }
			s.getJSON(s.Prometheus+"/api/v1/label/"+m[2]+"/values?"+url.Values{"match[]": {m[1]}}.Encode(), &out)
			values = out.Data
			return len(values) > 0
		})
		v := values[0]
		if len(values) > 1 {
			v = "(" + strings.Join(values, "|") + ")"
		}
		expr = strings.NewReplacer("${"+name+"}", v, "$"+name, v).Replace(expr)
	}
	return expr
}

// grafanaVars are the dashboard variables an expression may use, with the
// values Grafana would give them on a short range.
var grafanaVars = strings.NewReplacer("$__rate_interval", "1m", "${__rate_interval}", "1m",
	"$__interval", "15s", "${__interval}", "15s", "$__range", "10m", "${__range}", "10m")

// k6Metric is a metric pushed by k6's Prometheus remote-write output.
var k6Metric = regexp.MustCompile(`\bk6_[a-zA-Z0-9_]+`)

// expressions reads every PromQL expression of the provisioned dashboards
// and of the alert and recording rules. An alert's thresholds are cut off:
// what must have data is each expression it measures (both windows of a
// burn-rate alert), not the alert firing.
func expressions(t *testing.T) []promExpr {
	root := repoRoot(t)
	var out []promExpr
	dashboards, _ := filepath.Glob(filepath.Join(root, "observability", "grafana", "dashboards", "*.json"))
	if len(dashboards) == 0 {
		t.Fatal("no dashboards found")
	}
	for _, f := range dashboards {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Panels     []panel
			Templating struct {
				List []struct{ Name, Definition string }
			}
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		variables := map[string]string{}
		for _, v := range d.Templating.List {
			variables[v.Name] = v.Definition
		}
		for _, p := range flatten(d.Panels) {
			for _, tg := range p.Targets {
				// k6_* series exist only while a k6 run pushes them
				// (remote write, k6.json); this test runs none. A target
				// reading k6 metrics reads nothing else (deploy's
				// TestK6Dashboard), so skipping it leaves every carteiro
				// expression, k6.json's included, checked here.
				if k6Metric.MatchString(tg.Expr) {
					continue
				}
				if strings.TrimSpace(tg.Expr) != "" {
					out = append(out, promExpr{grafanaVars.Replace(tg.Expr), filepath.Base(f) + ": " + p.Title, variables})
				}
			}
		}
	}
	rules, err := promrules.Load(filepath.Join(root, "observability", "prometheus", "rules"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		where := r.File + ": " + r.Name()
		if r.Record != "" {
			out = append(out, promExpr{expr: strings.TrimSpace(r.Expr), where: where})
			continue
		}
		conditions, err := promrules.Conditions(r.Expr)
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		for _, c := range conditions {
			out = append(out, promExpr{expr: c.Measured, where: where})
		}
	}
	return out
}

type panel struct {
	Title   string
	Targets []struct{ Expr string }
	Panels  []panel
}

func flatten(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, flatten(p.Panels)...)
	}
	return out
}

// waitUntil polls cond for up to a minute.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
