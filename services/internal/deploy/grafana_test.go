package deploy

import (
	"cmp"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/carteiro/carteiro/services/internal/promrules"
)

// grafanaDashboardsDir is where the compose overlay mounts
// observability/grafana/dashboards in the grafana container.
const grafanaDashboardsDir = "/etc/grafana/dashboards"

// contractMetrics are the metric names of the telemetry contract (histograms
// by base name), plus Prometheus's own `up`, and the exporters' metrics the
// rules and dashboards read (postgres_exporter's pg_* with the carteiro
// queries of observability/postgres-exporter/queries.yaml, redis_exporter's
// redis_*: names both Debian's and the pinned images' versions export) and
// the collector's own.
// Dashboards, alert rules and the datasources' trace→metrics queries may use
// nothing else, besides the series the recording rules make.
var contractMetrics = map[string]string{
	"carteiro_http_requests_total":             "counter",
	"carteiro_http_request_duration_seconds":   "histogram",
	"carteiro_messages_accepted_total":         "counter",
	"carteiro_outbox_published_total":          "counter",
	"carteiro_outbox_unpublished":              "gauge",
	"carteiro_queue_depth":                     "gauge",
	"carteiro_oldest_waiting_seconds":          "gauge",
	"carteiro_send_duration_seconds":           "histogram",
	"carteiro_delivery_latency_seconds":        "histogram",
	"carteiro_messages_total":                  "counter",
	"carteiro_worker_inflight":                 "gauge",
	"carteiro_stale_writes_total":              "counter",
	"carteiro_outcome_writes_found_done_total": "counter",
	"carteiro_takeovers_total":                 "counter",
	"carteiro_claims_lost_total":               "counter",
	"carteiro_lease_renewal_failures_total":    "counter",
	"carteiro_poison_entries_total":            "counter",
	"nginx_connections_active":                 "gauge",
	"nginx_http_requests_total":                "counter",
	"nginx_up":                                 "gauge",
	"up":                                       "gauge",
	// The OpenTelemetry Collector's span metrics (job otelcol).
	"traces_span_metrics_calls_total":      "counter",
	"traces_span_metrics_duration_seconds": "histogram",
	// The collector's own metrics (job otelcol-telemetry), as it names
	// them by default: no _total on its counters.
	"otelcol_processor_tail_sampling_sampling_trace_dropped_too_early": "counter",

	"pg_up":                               "gauge",
	"pg_settings_max_connections":         "gauge",
	"pg_stat_database_numbackends":        "gauge",
	"pg_stat_database_xact_commit":        "counter",
	"pg_stat_database_xact_rollback":      "counter",
	"pg_carteiro_emails_n_live_tup":       "gauge",
	"pg_carteiro_emails_n_dead_tup":       "gauge",
	"pg_carteiro_emails_total_bytes":      "gauge",
	"pg_carteiro_wal_written_bytes_total": "counter",
	"pg_carteiro_wal_size_bytes":          "gauge",

	"redis_up":                            "gauge",
	"redis_memory_used_bytes":             "gauge",
	"redis_memory_max_bytes":              "gauge",
	"redis_instance_info":                 "gauge",
	"redis_connected_clients":             "gauge",
	"redis_stream_length":                 "gauge",
	"redis_stream_group_messages_pending": "gauge",
}

// contractLabelValues are the closed label value sets of the contract.
var contractLabelValues = map[string][]string{
	"state":   {"stream", "lag", "pending", "queued", "sending", "failed", "dead"},
	"outcome": {"sent", "retry", "dead", "released"},
	"job":     {"carteiro-api", "carteiro-worker", "nginx", "postgres", "redis", "otelcol", "otelcol-telemetry", "prometheus"},
	"slo":     {"delivery-success", "delivery-latency", "api-availability"},
}

var (
	// A metric name: one of the contract's prefixes, or a recorded series
	// (level:metric:operations, with colons).
	metricNameRe = regexp.MustCompile(`\b(?:[a-z_][a-z0-9_]*:[a-z0-9_:]+|(?:carteiro|nginx|pg|redis|traces_span_metrics)_[a-z0-9_]+)\b`)
	stringLitRe  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	// label="a" or label=~"a|b" for a label with a closed value set.
	closedMatcherRe = regexp.MustCompile(`\b(state|outcome|job|slo)\s*(=~|=|!~|!=)\s*"([^"]*)"`)
)

// recordedSeries are the names the recording rules of
// observability/prometheus/rules make.
var recordedSeries = sync.OnceValue(func() map[string]bool {
	_, file, _, _ := runtime.Caller(0)
	rules, err := promrules.Load(filepath.Join(filepath.Dir(file), "..", "..", "..", promRulesDir))
	if err != nil {
		panic(err)
	}
	out := map[string]bool{}
	for _, r := range rules {
		if r.Record != "" {
			out[r.Record] = true
		}
	}
	return out
})

// checkPromQL reports the ways expr strays from the contract: unknown metric
// names (or histogram parts of non-histograms), series no recording rule
// makes, label values outside the closed sets, and missing metrics hidden
// behind `or vector(...)`.
func checkPromQL(expr string) []string {
	var problems []string
	for _, name := range metricNameRe.FindAllString(stringLitRe.ReplaceAllString(expr, `""`), -1) {
		if strings.Contains(name, ":") {
			if !recordedSeries()[name] {
				problems = append(problems, "series "+name+" is made by no recording rule")
			}
			continue
		}
		if _, ok := contractMetrics[name]; ok {
			continue
		}
		base, part := name, ""
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(name, suffix); ok {
				base, part = b, suffix
			}
		}
		if part == "" || contractMetrics[base] != "histogram" {
			problems = append(problems, "metric "+name+" is not in the telemetry contract")
		}
	}
	for _, m := range closedMatcherRe.FindAllStringSubmatch(expr, -1) {
		for _, v := range strings.Split(m[3], "|") {
			if strings.ContainsAny(v, ".*+?[]()") {
				continue // a real regular expression, not a list of values
			}
			if !slices.Contains(contractLabelValues[m[1]], v) {
				problems = append(problems, m[1]+` value "`+v+`" is not one of `+strings.Join(contractLabelValues[m[1]], ", "))
			}
		}
	}
	if regexp.MustCompile(`\bor\s+vector\(`).MatchString(expr) {
		problems = append(problems, "`or vector(...)` hides a missing metric")
	}
	return problems
}

func TestCheckPromQLHelper(t *testing.T) {
	cases := []struct {
		expr string
		ok   bool
	}{
		{`sum(rate(carteiro_http_requests_total{code=~"5.."}[5m]))`, true},
		{`histogram_quantile(0.99, sum by (le) (rate(carteiro_send_duration_seconds_bucket[1m])))`, true},
		{`max by (state) (carteiro_queue_depth{state=~"queued|failed"})`, true},
		{`up{job=~"carteiro-api|carteiro-worker|nginx"}`, true},
		{`sum(rate(carteiro_http_requests_total_bucket[1m]))`, false},
		{`sum(rate(carteiro_requests_total[1m]))`, false},
		{`carteiro_queue_depth{state="queud"}`, false},
		{`sum(carteiro_messages_total{outcome="dead"}) or vector(0)`, false},
		{`slo:burn_rate:1h{slo="delivery-success"}`, true},
		{`slo:burn_rate:2h{slo="delivery-success"}`, false},
		{`slo:burn_rate:1h{slo="delivery"}`, false},
		{`redis_stream_group:lag{stream="carteiro:emails"}`, true},
		{`rate(pg_stat_database_xact_commit{datname=~"$datname"}[5m])`, true},
		{`pg_stat_user_tables_n_dead_tup`, false},
	}
	for _, c := range cases {
		if got := checkPromQL(c.expr); (len(got) == 0) != c.ok {
			t.Errorf("checkPromQL(%q): got %v, want ok=%v", c.expr, got, c.ok)
		}
	}
}

type grafanaDatasource struct {
	Name      string         `yaml:"name"`
	Type      string         `yaml:"type"`
	UID       string         `yaml:"uid"`
	URL       string         `yaml:"url"`
	Access    string         `yaml:"access"`
	IsDefault bool           `yaml:"isDefault"`
	JSONData  map[string]any `yaml:"jsonData"`
}

// grafanaDatasources reads every provisioning file of
// observability/grafana/provisioning/datasources.
func grafanaDatasources(t *testing.T) map[string]grafanaDatasource {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(repoRoot(t), "observability", "grafana", "provisioning", "datasources", "*.y*ml"))
	if len(files) == 0 {
		t.Fatal("no datasource provisioning files")
	}
	out := map[string]grafanaDatasource{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			APIVersion  int                 `yaml:"apiVersion"`
			Datasources []grafanaDatasource `yaml:"datasources"`
		}
		if err := yaml.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if doc.APIVersion != 1 {
			t.Errorf("%s apiVersion: got %d, want 1", filepath.Base(f), doc.APIVersion)
		}
		// Grafana expands $VAR / ${VAR} in provisioning files from its
		// environment; its own variables must be written $$.
		// (Values only: comment lines are skipped.)
		values := regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(string(b), "")
		if m := regexp.MustCompile(`(^|[^$])\$\{?__[a-z]`).FindString(values); m != "" {
			t.Errorf("%s: got %q, want Grafana variables escaped as $$ (else expanded from the environment)", filepath.Base(f), m)
		}
		for _, ds := range doc.Datasources {
			if _, dup := out[ds.UID]; dup || ds.UID == "" {
				t.Errorf("datasource %q uid: got %q (duplicate or empty), want a unique fixed uid", ds.Name, ds.UID)
			}
			out[ds.UID] = ds
		}
	}
	return out
}

// dsRefs collects every datasourceUid value under v.
func dsRefs(v any, out *[]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && k == "datasourceUid" {
				*out = append(*out, s)
			}
			dsRefs(x, out)
		}
	case []any:
		for _, x := range v {
			dsRefs(x, out)
		}
	}
}

func TestGrafanaDatasources(t *testing.T) {
	ds := grafanaDatasources(t)
	merged := loadProject(t, baseFile, observabilityFile)
	want := map[string]struct{ typ, url string }{
		"carteiro-prometheus": {"prometheus", "http://prometheus:9090"},
		"carteiro-jaeger":     {"jaeger", "http://jaeger:16686"},
	}
	if got, w := sortedKeys(ds), sortedKeys(want); !slices.Equal(got, w) {
		t.Errorf("datasource uids: got %v, want %v", got, w)
	}
	for uid, w := range want {
		d := ds[uid]
		if d.Type != w.typ || d.URL != w.url || d.Access != "proxy" {
			t.Errorf("datasource %s: got type %q url %q access %q, want %q %q %q", uid, d.Type, d.URL, d.Access, w.typ, w.url, "proxy")
		}
		// The URL names a service of the overlay.
		host := strings.Split(strings.TrimPrefix(w.url, "http://"), ":")[0]
		if _, ok := merged.Services[host]; !ok {
			t.Errorf("datasource %s url %s: got no compose service %q", uid, w.url, host)
		}
		var refs []string
		dsRefs(d.JSONData, &refs)
		for _, r := range refs {
			if _, ok := ds[r]; !ok {
				t.Errorf("datasource %s jsonData: got datasourceUid %q, want one of %v", uid, r, sortedKeys(ds))
			}
		}
	}
	if !ds["carteiro-prometheus"].IsDefault {
		t.Errorf("datasource carteiro-prometheus isDefault: got false, want true")
	}

	// Exemplars (label trace_id) link to the Jaeger datasource.
	prom := ds["carteiro-prometheus"].JSONData
	dests, _ := prom["exemplarTraceIdDestinations"].([]any)
	linked := false
	for _, d := range dests {
		m, _ := d.(map[string]any)
		if m["name"] == "trace_id" && m["datasourceUid"] == "carteiro-jaeger" {
			linked = true
		}
	}
	if !linked {
		t.Errorf("carteiro-prometheus exemplarTraceIdDestinations: got %v, want {name: trace_id, datasourceUid: carteiro-jaeger}", dests)
	}

	// Spans link back to metrics in Prometheus, with contract metrics only.
	t2m, _ := ds["carteiro-jaeger"].JSONData["tracesToMetrics"].(map[string]any)
	if t2m["datasourceUid"] != "carteiro-prometheus" {
		t.Errorf("carteiro-jaeger tracesToMetrics.datasourceUid: got %v, want carteiro-prometheus", t2m["datasourceUid"])
	}
	queries, _ := t2m["queries"].([]any)
	if len(queries) == 0 {
		t.Errorf("carteiro-jaeger tracesToMetrics.queries: got none, want some")
	}
	for _, q := range queries {
		m, _ := q.(map[string]any)
		expr, _ := m["query"].(string)
		if expr == "" || m["name"] == "" {
			t.Errorf("carteiro-jaeger tracesToMetrics query: got %v, want a name and a query", m)
		}
		for _, p := range checkPromQL(expr) {
			t.Errorf("carteiro-jaeger tracesToMetrics query %q: %s", expr, p)
		}
	}
}

func TestGrafanaDashboardProvider(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(repoRoot(t), "observability", "grafana", "provisioning", "dashboards", "*.y*ml"))
	if len(files) != 1 {
		t.Fatalf("dashboard provider files: got %v, want one", files)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Name           string `yaml:"name"`
			Type           string `yaml:"type"`
			Folder         string `yaml:"folder"`
			AllowUIUpdates bool   `yaml:"allowUiUpdates"`
			Options        struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Providers) != 1 {
		t.Fatalf("dashboard providers: got %d, want 1", len(doc.Providers))
	}
	p := doc.Providers[0]
	if doc.APIVersion != 1 || p.Type != "file" || p.Folder != "carteiro" || p.Options.Path != grafanaDashboardsDir || p.AllowUIUpdates {
		t.Errorf("dashboard provider: got apiVersion %d type %q folder %q path %q allowUiUpdates %v, want 1 file carteiro %s false",
			doc.APIVersion, p.Type, p.Folder, p.Options.Path, p.AllowUIUpdates, grafanaDashboardsDir)
	}
}

type dashboardPanel struct {
	ID          int             `json:"id"`
	Type        string          `json:"type"`
	Title       string          `json:"title"`
	Description string          `json:"description"`
	Datasource  json.RawMessage `json:"datasource"`
	GridPos     *struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		RefID      string          `json:"refId"`
		Expr       string          `json:"expr"`
		Datasource json.RawMessage `json:"datasource"`
		Exemplar   bool            `json:"exemplar"`
		Format     string          `json:"format"`
	} `json:"targets"`
	Panels []dashboardPanel `json:"panels"`
}

func flattenPanels(ps []dashboardPanel) []dashboardPanel {
	var out []dashboardPanel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, flattenPanels(p.Panels)...)
	}
	return out
}

// walkJSON calls fn for every object in v, with its path.
func walkJSON(v any, path string, fn func(path string, obj map[string]any)) {
	switch v := v.(type) {
	case map[string]any:
		fn(path, v)
		for k, x := range v {
			walkJSON(x, path+"."+k, fn)
		}
	case []any:
		for i, x := range v {
			walkJSON(x, path+"["+strconv.Itoa(i)+"]", fn)
		}
	}
}

// labelValuesRe is a Grafana variable query: label_values(metric, label).
var labelValuesRe = regexp.MustCompile(`^label_values\(\s*[a-z_:][a-z0-9_:]*(\{[^}]*\})?\s*,\s*[a-z_][a-z0-9_]*\s*\)$`)

func TestGrafanaDashboards(t *testing.T) {
	ds := grafanaDatasources(t)
	files, _ := filepath.Glob(filepath.Join(repoRoot(t), "observability", "grafana", "dashboards", "*.json"))
	wantUIDs := map[string]string{
		"overview.json":   "carteiro-overview",
		"queue.json":      "carteiro-queue",
		"delivery.json":   "carteiro-delivery",
		"slo.json":        "carteiro-slo",
		"datastores.json": "carteiro-datastores",
		"k6.json":         "carteiro-k6", // load tests (TestK6Dashboard)
	}
	// The default time range: the last half hour, but for the SLOs, whose
	// windows run to days.
	wantFrom := map[string]string{"slo.json": "now-6h"}
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
	}
	sort.Strings(names)
	if want := sortedKeys(wantUIDs); !slices.Equal(names, want) {
		t.Errorf("dashboards: got %v, want %v", names, want)
	}
	rateRange := regexp.MustCompile(`\b(?:rate|irate)\([^\[]*\[([^\]]+)\]`)
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			// Importable as it is: no export placeholders.
			if strings.Contains(string(b), "${DS_") {
				t.Errorf("got a ${DS_...} import placeholder, want fixed datasource uids")
			}
			var raw map[string]any
			if err := json.Unmarshal(b, &raw); err != nil {
				t.Fatal(err)
			}
			if _, ok := raw["__inputs"]; ok {
				t.Errorf("got __inputs, want none (provisioned, not imported)")
			}
			// Every datasource reference, wherever it is, names a
			// provisioned datasource by uid and type.
			walkJSON(raw, "$", func(path string, obj map[string]any) {
				ref, ok := obj["datasource"]
				if !ok {
					return
				}
				m, ok := ref.(map[string]any)
				uid, _ := m["uid"].(string)
				typ, _ := m["type"].(string)
				d, known := ds[uid]
				if !ok || !known || d.Type != typ {
					t.Errorf("%s.datasource: got %v, want {type, uid} of a provisioned datasource %v", path, ref, sortedKeys(ds))
				}
			})
			var d struct {
				UID           string `json:"uid"`
				Title         string `json:"title"`
				SchemaVersion int    `json:"schemaVersion"`
				Refresh       string `json:"refresh"`
				Time          struct{ From, To string }
				Panels        []dashboardPanel `json:"panels"`
				Templating    struct {
					List []struct{ Name, Type, Definition string }
				}
			}
			if err := json.Unmarshal(b, &d); err != nil {
				t.Fatal(err)
			}
			if d.UID != wantUIDs[name] || d.Title == "" {
				t.Errorf("uid/title: got %q/%q, want %q and a title", d.UID, d.Title, wantUIDs[name])
			}
			from := cmp.Or(wantFrom[name], "now-30m")
			if d.SchemaVersion < 39 || d.Refresh != "10s" || d.Time.From != from || d.Time.To != "now" {
				t.Errorf("schemaVersion/refresh/time: got %d/%q/%s..%s, want >=39/10s/%s..now", d.SchemaVersion, d.Refresh, d.Time.From, d.Time.To, from)
			}
			// A dashboard variable is a query of label values that the
			// end-to-end test can resolve as Grafana does.
			for _, v := range d.Templating.List {
				if v.Type != "query" || !labelValuesRe.MatchString(v.Definition) || len(checkPromQL(v.Definition)) > 0 {
					t.Errorf("variable %s: got type %q definition %q, want a query label_values(<contract metric>, <label>)", v.Name, v.Type, v.Definition)
				}
			}
			ids := map[int]bool{}
			exprs := 0
			for _, p := range flattenPanels(d.Panels) {
				if ids[p.ID] || p.ID == 0 {
					t.Errorf("panel %q id: got %d (duplicate or zero), want unique", p.Title, p.ID)
				}
				ids[p.ID] = true
				if p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 {
					t.Errorf("panel %q: got no gridPos, want one", p.Title)
				}
				if p.Type == "row" {
					continue
				}
				if strings.TrimSpace(p.Description) == "" || p.Title == "" {
					t.Errorf("panel %q: got no description, want the question it answers", p.Title)
				}
				if len(p.Targets) == 0 {
					t.Errorf("panel %q: got no targets, want at least one query", p.Title)
				}
				for _, tg := range p.Targets {
					exprs++
					if strings.TrimSpace(tg.Expr) == "" || len(tg.Datasource) == 0 || len(p.Datasource) == 0 {
						t.Errorf("panel %q target %s: got expr %q, datasource %s (panel %s), want all set", p.Title, tg.RefID, tg.Expr, tg.Datasource, p.Datasource)
					}
					for _, problem := range checkPromQL(tg.Expr) {
						t.Errorf("panel %q target %s: %s", p.Title, tg.RefID, problem)
					}
					// Grafana picks a window that always spans enough scrapes.
					for _, m := range rateRange.FindAllStringSubmatch(tg.Expr, -1) {
						if m[1] != "$__rate_interval" {
							t.Errorf("panel %q target %s: got rate window [%s], want [$__rate_interval]", p.Title, tg.RefID, m[1])
						}
					}
				}
			}
			if exprs == 0 {
				t.Errorf("got no queries, want some")
			}
		})
	}

	// The delivery heatmap shows exemplars, i.e. links from a latency bucket to a trace.
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "observability", "grafana", "dashboards", "delivery.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct{ Panels []dashboardPanel }
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range flattenPanels(d.Panels) {
		for _, tg := range p.Targets {
			if p.Type == "heatmap" && tg.Exemplar && tg.Format == "heatmap" &&
				strings.Contains(tg.Expr, "carteiro_delivery_latency_seconds_bucket") {
				found = true
			}
		}
	}
	if !found {
		t.Errorf("delivery.json: got no heatmap of carteiro_delivery_latency_seconds_bucket with exemplars, want one")
	}
}
