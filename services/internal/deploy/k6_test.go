package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/carteiro/carteiro/services/internal/testenv"
)

// The k6 load tests (scripts/k6) cannot run here: k6 is not installable,
// it runs from its image (make load). What can be checked without it:
//
//   - TestK6ScriptsParse: every script parses as an ES module (node --check
//     on an .mjs copy: syntax only, imports are not resolved);
//   - TestK6Scripts: each script, evaluated by node against stand-ins for
//     k6's modules (testdata/k6), declares thresholds only on metrics it
//     emits, with aggregations and tags that exist, has its SLO thresholds,
//     and, run a few iterations against a fake of the API, throws nothing,
//     passes its checks and sends traceparent, Idempotency-Key and a
//     bounded `name` tag with every request;
//   - TestK6Service and TestK6Dashboard: the compose service and the
//     Grafana dashboard agree with the scripts.

const k6ScriptsDir = "scripts/k6"

// k6Scripts are the scripts users run (make load SCRIPT=...).
var k6Scripts = []string{"smoke", "load", "stress", "soak"}

// k6Builtin is one of k6's built-in metrics: its type, and the module a
// script must use for k6 to emit it ("" for every run).
type k6Builtin struct{ typ, module string }

var k6Builtins = map[string]k6Builtin{
	"checks":                   {"rate", "k6"},
	"data_received":            {"counter", ""},
	"data_sent":                {"counter", ""},
	"dropped_iterations":       {"counter", ""},
	"group_duration":           {"trend", "k6"},
	"http_req_blocked":         {"trend", "k6/http"},
	"http_req_connecting":      {"trend", "k6/http"},
	"http_req_duration":        {"trend", "k6/http"},
	"http_req_failed":          {"rate", "k6/http"},
	"http_req_receiving":       {"trend", "k6/http"},
	"http_req_sending":         {"trend", "k6/http"},
	"http_req_tls_handshaking": {"trend", "k6/http"},
	"http_req_waiting":         {"trend", "k6/http"},
	"http_reqs":                {"counter", "k6/http"},
	"iteration_duration":       {"trend", ""},
	"iterations":               {"counter", ""},
	"vus":                      {"gauge", ""},
	"vus_max":                  {"gauge", ""},
}

// k6Aggregations are the threshold aggregations k6 accepts per metric type.
var k6Aggregations = map[string]*regexp.Regexp{
	"counter": regexp.MustCompile(`^(count|rate)$`),
	"gauge":   regexp.MustCompile(`^value$`),
	"rate":    regexp.MustCompile(`^rate$`),
	"trend":   regexp.MustCompile(`^(avg|min|max|med|p\([0-9]+(\.[0-9]+)?\))$`),
}

// k6ThresholdRe is k6's threshold grammar: aggregation, operator, number.
var k6ThresholdRe = regexp.MustCompile(`^\s*(count|rate|value|avg|min|max|med|p\([0-9]+(?:\.[0-9]+)?\))\s*(<=|>=|===|==|!=|<|>)\s*(-?[0-9]+(?:\.[0-9]+)?)\s*$`)

var k6Executors = []string{"shared-iterations", "per-vu-iterations", "constant-vus", "ramping-vus",
	"constant-arrival-rate", "ramping-arrival-rate"}

func k6Node(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		testenv.Missing(t, "node (apt-get install nodejs): %v", err)
	}
	return node
}

// k6ScriptFiles lists every .js file under scripts/k6, relative to it.
func k6ScriptFiles(t *testing.T) []string {
	t.Helper()
	dir := filepath.Join(repoRoot(t), k6ScriptsDir)
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".js") {
			rel, _ := filepath.Rel(dir, path)
			files = append(files, rel)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range k6Scripts {
		if !slices.Contains(files, s+".js") {
			t.Errorf("%s/%s.js: missing", k6ScriptsDir, s)
		}
	}
	return files
}

func TestK6ScriptsParse(t *testing.T) {
	node := k6Node(t)
	dir := filepath.Join(repoRoot(t), k6ScriptsDir)
	tmp := t.TempDir()
	for _, rel := range k6ScriptFiles(t) {
		t.Run(rel, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(dir, rel))
			if err != nil {
				t.Fatal(err)
			}
			// .mjs: parsed as an ES module whatever package.json says.
			// --check parses only; `import http from 'k6/http'` is not
			// resolved.
			mjs := filepath.Join(tmp, strings.NewReplacer("/", "_", ".js", ".mjs").Replace(rel))
			if err := os.WriteFile(mjs, b, 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(node, "--check", mjs).CombinedOutput(); err != nil {
				t.Errorf("node --check %s: %v\n%s", rel, err, out)
			}
		})
	}
}

// k6Run is what testdata/k6/run.mjs reports about one script.
type k6Run struct {
	Errors  []string `json:"errors"`
	Options struct {
		Scenarios  map[string]map[string]any    `json:"scenarios"`
		Thresholds map[string][]json.RawMessage `json:"thresholds"`
		Tags       map[string]string            `json:"tags"`
		SystemTags []string                     `json:"systemTags"`
	} `json:"options"`
	Declared map[string]struct {
		Type   string `json:"type"`
		IsTime bool   `json:"isTime"`
	} `json:"declared"`
	Metrics map[string]struct {
		Type  string  `json:"type"`
		Count int     `json:"count"`
		Sum   float64 `json:"sum"`
	} `json:"metrics"`
	Requests []struct {
		Method   string            `json:"method"`
		URL      string            `json:"url"`
		Headers  map[string]string `json:"headers"`
		Tags     map[string]string `json:"tags"`
		Status   int               `json:"status"`
		Scenario string            `json:"scenario"`
	} `json:"requests"`
	Checks []struct {
		Name string `json:"name"`
		OK   bool   `json:"ok"`
	} `json:"checks"`
	Failed []string `json:"failed"`
}

// k6Harness is a directory where scripts/k6 imports the stand-in modules.
func k6Harness(t *testing.T) string {
	t.Helper()
	root := repoRoot(t)
	tmp := t.TempDir()
	k6CopyTree(t, filepath.Join(root, k6ScriptsDir), filepath.Join(tmp, "scripts"))
	k6CopyTree(t, filepath.Join(root, "services", "internal", "deploy", "testdata", "k6", "k6"), filepath.Join(tmp, "node_modules", "k6"))
	b, err := os.ReadFile(filepath.Join(root, "services", "internal", "deploy", "testdata", "k6", "run.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "run.mjs"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "package.json"), []byte(`{"type": "module", "private": true}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return tmp
}

func k6CopyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// runK6 evaluates scripts/k6/<script>.js in the harness with env as
// __ENV, running each scenario's function up to iterations times; every
// refuseEvery-th POST gets a 429 from the fake (0: none).
func runK6(t *testing.T, node, harness, script string, env map[string]string, iterations, refuseEvery int) k6Run {
	t.Helper()
	envJSON, _ := json.Marshal(env)
	cmd := exec.Command(node, "run.mjs", filepath.Join("scripts", script+".js"), string(envJSON),
		strconv.Itoa(iterations), strconv.Itoa(refuseEvery))
	cmd.Dir = harness
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node run.mjs %s: %v\n%s", script, err, stderr.String())
	}
	var r k6Run
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("%s: harness output: %v\n%s\n%s", script, err, stdout.String(), stderr.String())
	}
	return r
}

// k6Imports returns the modules a script imports, following its relative
// imports (the shared lib).
func k6Imports(t *testing.T, path string) map[string]bool {
	t.Helper()
	importRe := regexp.MustCompile(`(?m)^\s*import\s+(?:[^'"]*?\s+from\s+)?['"]([^'"]+)['"]`)
	seen := map[string]bool{}
	var walk func(string)
	walk = func(p string) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range importRe.FindAllStringSubmatch(string(b), -1) {
			if strings.HasPrefix(m[1], ".") {
				walk(filepath.Join(filepath.Dir(p), m[1]))
				continue
			}
			seen[m[1]] = true
		}
	}
	walk(path)
	return seen
}

// k6Threshold is one threshold expression, as a string or {threshold: ...}.
func k6Threshold(raw json.RawMessage) (string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var o struct {
		Threshold string `json:"threshold"`
	}
	if err := json.Unmarshal(raw, &o); err != nil || o.Threshold == "" {
		return "", fmt.Errorf("threshold %s: want a string or {threshold: string}", raw)
	}
	return o.Threshold, nil
}

// parseK6MetricName splits `name{tag:value,...}` as k6 does.
func parseK6MetricName(key string) (string, [][2]string, error) {
	open, end := strings.IndexByte(key, '{'), strings.LastIndexByte(key, '}')
	if open < 0 && end < 0 {
		return key, nil, nil
	}
	if open < 0 || end != len(key)-1 || end < open {
		return "", nil, fmt.Errorf("malformed sub-metric %q", key)
	}
	var tags [][2]string
	for _, kv := range strings.Split(key[open+1:end], ",") {
		k, v, ok := strings.Cut(kv, ":")
		k, v = strings.TrimSpace(k), strings.Trim(strings.TrimSpace(v), `"'`)
		if !ok || k == "" || v == "" {
			return "", nil, fmt.Errorf("sub-metric %q: tag %q is not key:value", key, kv)
		}
		tags = append(tags, [2]string{k, v})
	}
	return key[:open], tags, nil
}

func k6Seconds(t *testing.T, d any) float64 {
	t.Helper()
	s, _ := d.(string)
	re := regexp.MustCompile(`(\d+(?:\.\d+)?)(ms|s|m|h)`)
	total, used := 0.0, 0
	for _, m := range re.FindAllStringSubmatch(s, -1) {
		n, _ := strconv.ParseFloat(m[1], 64)
		total += n * map[string]float64{"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m[2]]
		used += len(m[0])
	}
	if s == "" || used != len(s) {
		t.Errorf("duration %v: want a k6 duration such as 30s or 2m", d)
	}
	return total
}

func k6Num(v any) float64 {
	f, ok := v.(float64)
	if !ok {
		return math.NaN()
	}
	return f
}

// checkK6Options checks a script's thresholds, scenarios and tags.
func checkK6Options(t *testing.T, script string, r k6Run, imports map[string]bool) {
	t.Helper()
	o := r.Options
	if len(o.Scenarios) == 0 {
		t.Errorf("options.scenarios: got none, want the script's workload")
	}
	arrival := false
	for name, sc := range o.Scenarios {
		ex, _ := sc["executor"].(string)
		if !slices.Contains(k6Executors, ex) {
			t.Errorf("scenario %s executor: got %q, want one of %v", name, ex, k6Executors)
		}
		arrival = arrival || strings.HasSuffix(ex, "arrival-rate")
		for _, k := range []string{"duration", "maxDuration", "startTime", "gracefulStop", "timeUnit"} {
			if v, ok := sc[k]; ok {
				k6Seconds(t, v)
			}
		}
		if stages, ok := sc["stages"].([]any); ok {
			for _, st := range stages {
				m, _ := st.(map[string]any)
				k6Seconds(t, m["duration"])
				if target := k6Num(m["target"]); !(target >= 0) || target != math.Trunc(target) {
					t.Errorf("scenario %s stage target: got %v, want a whole number", name, m["target"])
				}
			}
		}
		for _, k := range []string{"vus", "iterations", "rate", "preAllocatedVUs", "maxVUs", "startRate"} {
			if v, ok := sc[k]; ok && (k6Num(v) < 0 || k6Num(v) != math.Trunc(k6Num(v))) {
				t.Errorf("scenario %s %s: got %v, want a whole number", name, k, v)
			}
		}
	}
	if o.Tags["testid"] == "" {
		t.Errorf("options.tags.testid: got %q, want the run's id on every metric", o.Tags["testid"])
	}

	tagKeys := map[string]bool{}
	for _, k := range o.SystemTags {
		tagKeys[k] = true
	}
	for k := range o.Tags {
		tagKeys[k] = true
	}
	aggs := map[string]map[string]bool{}
	for _, key := range sortedKeys(o.Thresholds) {
		name, tags, err := parseK6MetricName(key)
		if err != nil {
			t.Errorf("threshold %q: %v", key, err)
			continue
		}
		var typ string
		if b, ok := k6Builtins[name]; ok {
			typ = b.typ
			if b.module != "" && !imports[b.module] {
				t.Errorf("threshold %q: %s is emitted only by scripts that use %s; this one does not import it", key, name, b.module)
			}
			if name == "dropped_iterations" && !arrival {
				t.Errorf("threshold %q: dropped_iterations comes from arrival-rate executors only", key)
			}
		} else if d, ok := r.Declared[name]; ok {
			typ = d.Type
		} else {
			t.Errorf("threshold %q: %s is neither a k6 built-in metric nor declared by the script (new Counter/Rate/Trend/Gauge)", key, name)
			continue
		}
		for _, tag := range tags {
			if !tagKeys[tag[0]] {
				t.Errorf("threshold %q: tag %s is not sent (systemTags %v, tags %v)", key, tag[0], o.SystemTags, o.Tags)
			}
			if tag[0] == "scenario" && o.Scenarios[tag[1]] == nil {
				t.Errorf("threshold %q: no scenario %q", key, tag[1])
			}
		}
		if len(o.Thresholds[key]) == 0 {
			t.Errorf("threshold %q: got no expressions", key)
		}
		for _, raw := range o.Thresholds[key] {
			expr, err := k6Threshold(raw)
			if err != nil {
				t.Errorf("threshold %q: %v", key, err)
				continue
			}
			m := k6ThresholdRe.FindStringSubmatch(expr)
			if m == nil {
				t.Errorf("threshold %q: %q is not <aggregation> <operator> <number>", key, expr)
				continue
			}
			if !k6Aggregations[typ].MatchString(m[1]) {
				t.Errorf("threshold %q: %s of a %s metric; k6 has %s", key, m[1], typ, k6Aggregations[typ])
			}
			if aggs[name] == nil {
				aggs[name] = map[string]bool{}
			}
			aggs[name][m[1]+" "+m[2]+" "+m[3]] = true
			aggs[name][m[1]] = true
		}
	}

	// The SLOs every script states.
	for _, want := range [][2]string{
		{"http_req_failed", "rate"},
		{"http_req_duration", "p(95)"},
		{"http_req_duration", "p(99)"},
		{"accepted", "count"},
	} {
		if !aggs[want[0]][want[1]] {
			t.Errorf("thresholds: got none on %s %s, want it as an SLO (k6 then exits non-zero when it breaks)", want[1], want[0])
		}
	}
	if script == "stress" {
		for _, want := range []string{"lost count == 0", "refused count > 0", "server_errors count == 0"} {
			f := strings.Fields(want)
			if !aggs[f[0]][f[1]+" "+f[2]+" "+f[3]] {
				t.Errorf("thresholds: got none %s:%s%s%s, want it", f[0], f[1], f[2], f[3])
			}
		}
	}
}

// idempotencyKey is the api's rule (services/api/idempotency.go): a
// structured-field string or the same characters bare, 1 to 255
// printable ASCII characters without quotes or backslashes.
var idempotencyKeyRe = regexp.MustCompile(`^"?[\x21\x23-\x5b\x5d-\x7e]{1,255}"?$`)

var traceparentRe = regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-01$`)

func TestK6Scripts(t *testing.T) {
	node := k6Node(t)
	harness := k6Harness(t)
	root := repoRoot(t)
	const base, verify = "http://edge.test:8080", "http://api.test:8081"
	for _, script := range k6Scripts {
		t.Run(script, func(t *testing.T) {
			env := map[string]string{"BASE_URL": base, "VERIFY_URL": verify, "TESTID": "harness",
				"CHECK_AFTER": "0s"} // soak: read back at once
			refuse := 0
			if script == "stress" {
				refuse = 3 // the refusal path runs too
			}
			r := runK6(t, node, harness, script, env, 4, refuse)
			for _, e := range r.Errors {
				t.Errorf("script error: %s", e)
			}
			imports := k6Imports(t, filepath.Join(root, k6ScriptsDir, script+".js"))
			checkK6Options(t, script, r, imports)
			if r.Options.Tags["testid"] != "harness" {
				t.Errorf("options.tags.testid: got %q, want TESTID (harness)", r.Options.Tags["testid"])
			}

			for _, c := range r.Checks {
				if !c.OK {
					t.Errorf("check %q failed against the fake API", c.Name)
				}
			}
			if len(r.Checks) == 0 {
				t.Errorf("checks: got none, want the answers checked")
			}
			if len(r.Failed) > 0 {
				t.Errorf("exec.test.fail: %v", r.Failed)
			}
			if a := r.Metrics["accepted"]; a.Sum < 1 {
				t.Errorf("accepted: got %v, want the 202s counted", a.Sum)
			}
			if len(r.Requests) == 0 {
				t.Fatalf("requests: got none")
			}
			keys := map[string]int{}
			for _, req := range r.Requests {
				what := req.Method + " " + req.URL
				if !strings.HasPrefix(req.URL, base+"/") && !strings.HasPrefix(req.URL, verify+"/") {
					t.Errorf("%s: want BASE_URL or VERIFY_URL", what)
				}
				m := traceparentRe.FindStringSubmatch(req.Headers["traceparent"])
				if m == nil || strings.Trim(m[1], "0") == "" || strings.Trim(m[2], "0") == "" {
					t.Errorf("%s traceparent: got %q, want 00-<32 hex>-<16 hex>-01, ids not all zero", what, req.Headers["traceparent"])
				}
				// name bounds the label values (a status URL holds an id);
				// a fixed set: the routes.
				if n := req.Tags["name"]; n == "" || strings.ContainsAny(n, "0123456789") {
					t.Errorf("%s tag name: got %q, want the route (no ids)", what, n)
				}
				if req.Method == "POST" {
					k := req.Headers["Idempotency-Key"]
					if !idempotencyKeyRe.MatchString(k) || strings.Trim(k, `"`) == "" {
						t.Errorf("%s Idempotency-Key: got %q, want 1-255 printable ASCII characters, as an sf-string or bare", what, k)
					}
					keys[k]++
				}
			}
			// A fresh key per message; smoke.js repeats one on purpose.
			if script != "smoke" {
				for k, n := range keys {
					if n > 1 {
						t.Errorf("Idempotency-Key %s: sent %d times, want a fresh key per message", k, n)
					}
				}
			}

			switch script {
			case "stress":
				m := r.Metrics
				if m["refused"].Sum == 0 || m["lost"].Sum != 0 || m["verified"].Sum == 0 {
					t.Errorf("stress against the fake: refused %v lost %v verified %v, want >0, 0, >0", m["refused"].Sum, m["lost"].Sum, m["verified"].Sum)
				}
				// In one VU, verify reads back exactly what it was given.
				if got := m["verified"].Sum + m["verify_skipped"].Sum; got != m["accepted"].Sum {
					t.Errorf("stress: verified+skipped %v, want accepted %v", got, m["accepted"].Sum)
				}
				var reads int
				for _, req := range r.Requests {
					if req.Scenario == "verify" {
						reads++
						if !strings.HasPrefix(req.URL, verify+"/api/messages/") {
							t.Errorf("verify reads %s, want VERIFY_URL", req.URL)
						}
					}
				}
				if reads == 0 {
					t.Errorf("verify scenario: got no reads")
				}
			case "soak":
				if r.Metrics["delivered"].Count == 0 || r.Metrics["delivery_latency"].Count == 0 {
					t.Errorf("soak: delivered %d samples, delivery_latency %d, want some", r.Metrics["delivered"].Count, r.Metrics["delivery_latency"].Count)
				}
			}
		})
	}

	// stress.js's verify reaches every VU only if all VUs exist from the
	// start (no unplanned ones), verify runs once on each, and starts
	// after stress is over (so the two never hold VUs at the same time).
	for _, env := range []map[string]string{{}, {"PEAK": "900", "MAX_VUS": "300", "RAMP": "10s", "HOLD": "1m30s"}} {
		t.Run(fmt.Sprintf("stress verify covers every VU %v", env), func(t *testing.T) {
			r := runK6(t, node, harness, "stress", env, 0, 0)
			st, v := r.Options.Scenarios["stress"], r.Options.Scenarios["verify"]
			if st == nil || v == nil {
				t.Fatalf("scenarios: got %v, want stress and verify", sortedKeys(r.Options.Scenarios))
			}
			if k6Num(st["preAllocatedVUs"]) != k6Num(st["maxVUs"]) || k6Num(v["vus"]) != k6Num(st["maxVUs"]) {
				t.Errorf("VUs: stress preAllocated %v max %v, verify %v; want all equal", st["preAllocatedVUs"], st["maxVUs"], v["vus"])
			}
			if v["executor"] != "per-vu-iterations" || k6Num(v["iterations"]) != 1 || v["exec"] != "verify" {
				t.Errorf("verify: got %v, want per-vu-iterations, 1 iteration, exec verify", v)
			}
			end := k6Seconds(t, st["gracefulStop"])
			for _, s := range st["stages"].([]any) {
				end += k6Seconds(t, s.(map[string]any)["duration"])
			}
			if start := k6Seconds(t, v["startTime"]); start <= end {
				t.Errorf("verify startTime %vs: want after stress's end, gracefulStop included (%vs)", start, end)
			}
			if env["PEAK"] != "" && k6Num(st["maxVUs"]) != 300 {
				t.Errorf("MAX_VUS=300: got maxVUs %v", st["maxVUs"])
			}
		})
	}
}

// TestK6Service: the compose k6 service runs the scripts against the edge
// and reports to Prometheus, only when asked (profile load).
func TestK6Service(t *testing.T) {
	p := loadProject(t, baseFile, observabilityFile)
	k6, ok := p.Services["k6"]
	if !ok {
		t.Fatalf("services: got %v, want k6", sortedServiceNames(p))
	}
	if !slices.Equal(k6.Profiles, []string{"load"}) {
		t.Errorf("k6 profiles: got %v, want [load] (not started by up)", k6.Profiles)
	}
	if want := readDotEnv(t)["K6_IMAGE"]; k6.Image != want || !strings.HasPrefix(want, "grafana/k6:") {
		t.Errorf("k6 image: got %q, want .env K6_IMAGE %q (grafana/k6)", k6.Image, want)
	}
	if k6.Restart != "no" {
		t.Errorf("k6 restart: got %q, want no (a one-shot job)", k6.Restart)
	}
	wantMount(t, k6, k6ScriptsDir, "/scripts")
	if len(k6.Command) < 2 || k6.Command[0] != "run" || !strings.HasPrefix(k6.Command[len(k6.Command)-1], "/scripts/") {
		t.Errorf("k6 command: got %v, want run /scripts/<script>.js", k6.Command)
	}

	fe := p.Services["frontend"]
	listen, _ := envValue(fe, "NGINX_LISTEN")
	promCmd := p.Services["prometheus"].Command
	want := map[string]string{
		"BASE_URL":                       "http://frontend:" + listen,
		"K6_OUT":                         "experimental-prometheus-rw",
		"K6_PROMETHEUS_RW_SERVER_URL":    "http://prometheus:9090/api/v1/write",
		"K6_PROMETHEUS_RW_STALE_MARKERS": "true",
		"K6_NO_USAGE_REPORT":             "true",
		"K6_AUTO_EXTENSION_RESOLUTION":   "false",
	}
	for _, k := range sortedKeys(want) {
		if got, _ := envValue(k6, k); got != want[k] {
			t.Errorf("k6 env %s: got %q, want %q", k, got, want[k])
		}
	}
	if !slices.Contains([]string(promCmd), "--web.enable-remote-write-receiver") {
		t.Errorf("prometheus command: got %v, want --web.enable-remote-write-receiver (k6 pushes)", promCmd)
	}
	// k6 reaches frontend and Prometheus on a network they share.
	for _, svc := range []string{"frontend", "prometheus"} {
		shared := false
		for n := range k6.Networks {
			_, on := p.Services[svc].Networks[n]
			shared = shared || on
		}
		if !shared {
			t.Errorf("k6 networks %v: none shared with %s", sortedKeys(k6.Networks), svc)
		}
	}

	// make load runs it.
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^load:.*\n(?:\t.*\n)*\t.*--profile load run --rm`).Match(b) ||
		!strings.Contains(string(b), "k6 run /scripts/") {
		t.Errorf("Makefile: got no `load` target running `--profile load run --rm ... k6 run /scripts/<script>.js`")
	}
}

// k6TrendStatSuffix is the series suffix k6's remote-write output gives a
// trend statistic: p(95) → p95, p(99.9) → p999.
func k6TrendStatSuffix(stat string) string {
	if strings.HasPrefix(stat, "p(") {
		return "p" + strings.ReplaceAll(strings.TrimSuffix(strings.TrimPrefix(stat, "p("), ")"), ".", "")
	}
	return stat
}

// TestK6Dashboard: k6.json shows k6's results beside carteiro's own
// panels. Every target reads either k6 metrics only (filtered by the
// testid variable) or carteiro's only, so the end-to-end test can skip the
// k6 ones (no k6 runs there) and still check the rest. Every k6 series it
// reads is one k6's remote-write output makes from a metric the scripts
// emit, with the compose service's trend statistics.
func TestK6Dashboard(t *testing.T) {
	node := k6Node(t)
	harness := k6Harness(t)
	root := repoRoot(t)

	// Series names the scripts produce in Prometheus.
	k6 := loadProject(t, baseFile, observabilityFile).Services["k6"]
	statsEnv, _ := envValue(k6, "K6_PROMETHEUS_RW_TREND_STATS")
	var stats []string
	for _, s := range strings.Split(statsEnv, ",") {
		stats = append(stats, k6TrendStatSuffix(strings.TrimSpace(s)))
	}
	series := map[string]bool{}
	add := func(name, typ string) {
		switch typ {
		case "counter":
			series["k6_"+name+"_total"] = true
		case "rate":
			series["k6_"+name+"_rate"] = true
		case "gauge":
			series["k6_"+name] = true
		case "trend":
			for _, s := range stats {
				series["k6_"+name+"_"+s] = true
			}
		}
	}
	for _, script := range k6Scripts {
		imports := k6Imports(t, filepath.Join(root, k6ScriptsDir, script+".js"))
		for name, b := range k6Builtins {
			if b.module == "" || imports[b.module] {
				add(name, b.typ)
			}
		}
		for name, d := range runK6(t, node, harness, script, map[string]string{}, 0, 0).Declared {
			add(name, d.Type)
		}
	}

	b, err := os.ReadFile(filepath.Join(root, "observability", "grafana", "dashboards", "k6.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels     []dashboardPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	hasVar := false
	for _, v := range d.Templating.List {
		q, _ := json.Marshal(v.Query)
		hasVar = hasVar || (v.Name == "testid" && strings.Contains(string(q), "label_values(k6_"))
	}
	if !hasVar {
		t.Errorf("templating: got no testid variable from label_values(k6_..., testid)")
	}

	k6Name := regexp.MustCompile(`\bk6_[a-zA-Z0-9_]+`)
	k6Selector := regexp.MustCompile(`\bk6_[a-zA-Z0-9_]+\{[^}]*testid=~"\$testid"[^}]*\}`)
	ours := regexp.MustCompile(`\b(?:carteiro|nginx)_[a-z0-9_]+|\bup\b`)
	var k6Targets, ownTargets int
	for _, p := range flattenPanels(d.Panels) {
		for _, tg := range p.Targets {
			names := k6Name.FindAllString(tg.Expr, -1)
			if len(names) == 0 {
				ownTargets++
				if strings.Contains(tg.Expr, "$testid") {
					t.Errorf("panel %q target %s: a carteiro expression uses $testid (carteiro's metrics have no such label)", p.Title, tg.RefID)
				}
				continue
			}
			k6Targets++
			if ours.MatchString(tg.Expr) {
				t.Errorf("panel %q target %s: %q mixes k6 and carteiro metrics; want one or the other per target", p.Title, tg.RefID, tg.Expr)
			}
			if got := len(k6Selector.FindAllString(tg.Expr, -1)); got != len(names) {
				t.Errorf("panel %q target %s: %q: want every k6 selector filtered by testid=~\"$testid\"", p.Title, tg.RefID, tg.Expr)
			}
			for _, n := range names {
				if !series[n] {
					t.Errorf("panel %q target %s: %s is not a series the scripts push (have %v)", p.Title, tg.RefID, n, sortedKeys(series))
				}
			}
		}
	}
	if k6Targets == 0 || ownTargets == 0 {
		t.Errorf("k6.json: got %d k6 targets and %d carteiro targets, want both (k6's results beside carteiro's own)", k6Targets, ownTargets)
	}
}
