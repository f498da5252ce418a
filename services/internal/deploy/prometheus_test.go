package deploy

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/carteiro/carteiro/internal/devstack"
	"github.com/carteiro/carteiro/services/internal/promrules"
	"github.com/carteiro/carteiro/services/internal/testenv"
)

const (
	promDir            = "observability/prometheus"
	promComposeConfig  = promDir + "/prometheus.yml"
	promNativeTemplate = promDir + "/prometheus.native.yml.template"
	promRulesDir       = promDir + "/rules"
	promRulesTestsDir  = promDir + "/tests"
	runbooksDir        = "observability/runbooks"
	// runbookURLBase is where every alert's runbook_url points: the
	// repository's observability/runbooks/ on GitHub (the module path's
	// repository), followed by the alert's name and .md.
	runbookURLBase = "https://github.com/carteiro/carteiro/blob/main/" + runbooksDir + "/"
)

// nativePlaceholders are the ${...} of prometheus.native.yml.template, with
// test values. The native stack (package devstack) renders the template
// with these names.
var nativePlaceholders = map[string]string{
	"API_METRICS_TARGET":       "127.0.0.1:9101",
	"WORKER_METRICS_TARGET":    "127.0.0.1:9102",
	"NGINX_EXPORTER_TARGET":    "127.0.0.1:9113",
	"POSTGRES_EXPORTER_TARGET": "127.0.0.1:9187",
	"REDIS_EXPORTER_TARGET":    "127.0.0.1:9121",
	"ALERTMANAGER_TARGET":      "127.0.0.1:9093",
	"OTELCOL_METRICS_TARGET":   "127.0.0.1:8889",
	"OTELCOL_TELEMETRY_TARGET": "127.0.0.1:8888",
	"SCRAPE_INTERVAL":          "5s",
	"RULES_DIR":                "", // set by renderNativeConfig
}

var placeholderRe = regexp.MustCompile(`\$\{([A-Z_][A-Z0-9_]*)\}`)

// renderNativeConfig renders the native template as the native stack does
// (plain substitution) and fails on a placeholder left over.
func renderNativeConfig(t *testing.T) []byte {
	t.Helper()
	root := repoRoot(t)
	b, err := os.ReadFile(filepath.Join(root, promNativeTemplate))
	if err != nil {
		t.Fatal(err)
	}
	vals := map[string]string{}
	for k, v := range nativePlaceholders {
		vals[k] = v
	}
	vals["RULES_DIR"] = filepath.Join(root, promRulesDir)
	out := string(b)
	for k, v := range vals {
		out = strings.ReplaceAll(out, "${"+k+"}", v)
	}
	if left := placeholderRe.FindAllString(out, -1); len(left) > 0 {
		t.Fatalf("%s: got unrendered placeholders %v, want only %v", promNativeTemplate, left, sortedKeys(nativePlaceholders))
	}
	return []byte(out)
}

type promConfig struct {
	Global struct {
		ScrapeInterval  string   `yaml:"scrape_interval"`
		ScrapeProtocols []string `yaml:"scrape_protocols"`
	} `yaml:"global"`
	RuleFiles []string `yaml:"rule_files"`
	Alerting  struct {
		Alertmanagers []struct {
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"alertmanagers"`
	} `yaml:"alerting"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		MetricsPath   string `yaml:"metrics_path"`
		StaticConfigs []struct {
			Targets []string `yaml:"targets"`
		} `yaml:"static_configs"`
	} `yaml:"scrape_configs"`
}

func parsePromConfig(t *testing.T, name string, b []byte) promConfig {
	t.Helper()
	var c promConfig
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return c
}

// alertmanagers are the Alertmanager targets the alerts go to.
func (c promConfig) alertmanagers() []string {
	var out []string
	for _, am := range c.Alerting.Alertmanagers {
		for _, s := range am.StaticConfigs {
			out = append(out, s.Targets...)
		}
	}
	return out
}

// jobs maps job name → metrics path + targets.
func (c promConfig) jobs() map[string][]string {
	out := map[string][]string{}
	for _, sc := range c.ScrapeConfigs {
		v := []string{sc.MetricsPath}
		for _, s := range sc.StaticConfigs {
			v = append(v, s.Targets...)
		}
		out[sc.JobName] = v
	}
	return out
}

// TestPrometheusConfigsAgree: the compose and native scrape configs have the
// same jobs (the contract's job names) and rules, compose targets are the
// services' real listeners, and the template's placeholders are exactly the
// ones the native stack (package devstack) provides.
func TestPrometheusConfigsAgree(t *testing.T) {
	root := repoRoot(t)
	b, err := os.ReadFile(filepath.Join(root, promComposeConfig))
	if err != nil {
		t.Fatal(err)
	}
	compose := parsePromConfig(t, promComposeConfig, b)
	native := parsePromConfig(t, promNativeTemplate, renderNativeConfig(t))

	// Exemplars travel only in OpenMetrics: ask for it first.
	if p := compose.Global.ScrapeProtocols; len(p) == 0 || p[0] != "OpenMetricsText1.0.0" {
		t.Errorf("%s scrape_protocols: got %v, want OpenMetricsText1.0.0 first", promComposeConfig, p)
	}
	known := []string{"OpenMetricsText1.0.0", "OpenMetricsText0.0.1", "PrometheusText1.0.0", "PrometheusText0.0.4", "PrometheusProto"}
	for _, p := range compose.Global.ScrapeProtocols {
		if !slices.Contains(known, p) {
			t.Errorf("%s scrape_protocols: got %q, want one of %v", promComposeConfig, p, known)
		}
	}

	merged := loadProject(t, baseFile, observabilityFile)
	port := func(svc, key string) string {
		v, _ := envValue(merged.Services[svc], key)
		_, p, err := net.SplitHostPort(v)
		if err != nil {
			t.Errorf("%s %s: got %q, want host:port", svc, key, v)
		}
		return p
	}
	// The port a service listens on, from its command's listen flag.
	listenPort := func(svc string) string {
		for _, arg := range merged.Services[svc].Command {
			for _, word := range strings.Fields(arg) { // one argument may be a shell command
				if v, ok := strings.CutPrefix(word, "--web.listen-address="); ok {
					_, p, _ := net.SplitHostPort(v)
					return p
				}
			}
		}
		t.Errorf("%s command %v: got no --web.listen-address, want one", svc, merged.Services[svc].Command)
		return ""
	}
	// The collector's configuration takes its own metrics' host and port
	// apart (service.telemetry.metrics).
	telemetryPort, _ := envValue(merged.Services["otelcol"], "OTELCOL_TELEMETRY_PORT")
	wantCompose := map[string][]string{
		"carteiro-api":      {"/metrics", "app:" + port("app", "INTERNAL_ADDR")},
		"carteiro-worker":   {"/metrics", "worker:" + port("worker", "INTERNAL_ADDR")},
		"nginx":             {"/metrics", "nginx-exporter:" + listenPort("nginx-exporter")},
		"postgres":          {"/metrics", "postgres-exporter:" + listenPort("postgres-exporter")},
		"redis":             {"/metrics", "redis-exporter:" + listenPort("redis-exporter")},
		"otelcol":           {"/metrics", "otelcol:" + port("otelcol", "OTELCOL_METRICS_ADDR")},
		"otelcol-telemetry": {"/metrics", "otelcol:" + telemetryPort},
		"prometheus":        {"", "127.0.0.1:9090"},
	}
	if g, w := compose.alertmanagers(), []string{"alertmanager:" + listenPort("alertmanager")}; !slices.Equal(g, w) {
		t.Errorf("%s alertmanagers: got %v, want %v", promComposeConfig, g, w)
	}
	if g, w := native.alertmanagers(), []string{nativePlaceholders["ALERTMANAGER_TARGET"]}; !slices.Equal(g, w) {
		t.Errorf("%s alertmanagers: got %v, want %v", promNativeTemplate, g, w)
	}
	got := compose.jobs()
	for _, job := range sortedKeys(wantCompose) {
		if !slices.Equal(got[job], wantCompose[job]) {
			t.Errorf("%s job %s: got path+targets %v, want %v", promComposeConfig, job, got[job], wantCompose[job])
		}
	}
	if g, w := sortedKeys(got), sortedKeys(wantCompose); !slices.Equal(g, w) {
		t.Errorf("%s jobs: got %v, want %v", promComposeConfig, g, w)
	}
	wantNative := map[string][]string{
		"carteiro-api":      {"/metrics", nativePlaceholders["API_METRICS_TARGET"]},
		"carteiro-worker":   {"/metrics", nativePlaceholders["WORKER_METRICS_TARGET"]},
		"nginx":             {"/metrics", nativePlaceholders["NGINX_EXPORTER_TARGET"]},
		"postgres":          {"/metrics", nativePlaceholders["POSTGRES_EXPORTER_TARGET"]},
		"redis":             {"/metrics", nativePlaceholders["REDIS_EXPORTER_TARGET"]},
		"otelcol":           {"/metrics", nativePlaceholders["OTELCOL_METRICS_TARGET"]},
		"otelcol-telemetry": {"/metrics", nativePlaceholders["OTELCOL_TELEMETRY_TARGET"]},
	}
	gotNative := native.jobs()
	if g, w := sortedKeys(gotNative), sortedKeys(wantNative); !slices.Equal(g, w) {
		t.Errorf("%s jobs: got %v, want %v (the compose jobs but `prometheus`)", promNativeTemplate, g, w)
	}
	for _, job := range sortedKeys(wantNative) {
		if !slices.Equal(gotNative[job], wantNative[job]) {
			t.Errorf("%s job %s: got path+targets %v, want %v", promNativeTemplate, job, gotNative[job], wantNative[job])
		}
	}
	if w := []string{"rules/*.yml"}; !slices.Equal(compose.RuleFiles, w) {
		t.Errorf("%s rule_files: got %v, want %v", promComposeConfig, compose.RuleFiles, w)
	}
	if w := []string{filepath.Join(root, promRulesDir, "*.yml")}; !slices.Equal(native.RuleFiles, w) {
		t.Errorf("%s rule_files: got %v, want %v", promNativeTemplate, native.RuleFiles, w)
	}

	// Placeholders of the template = the names above = what devstack passes.
	tmpl, err := os.ReadFile(filepath.Join(root, promNativeTemplate))
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, m := range placeholderRe.FindAllStringSubmatch(string(tmpl), -1) {
		used[m[1]] = true
	}
	if g, w := sortedKeys(used), sortedKeys(nativePlaceholders); !slices.Equal(g, w) {
		t.Errorf("%s placeholders: got %v, want %v", promNativeTemplate, g, w)
	}
	dev, err := devstack.Load(root, []string{"DEV_DIR=" + t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if g, w := sortedKeys(dev.PrometheusVars()), sortedKeys(nativePlaceholders); !slices.Equal(g, w) {
		t.Errorf("devstack renders %s with %v, want %v", promNativeTemplate, g, w)
	}
}

// TestAlertRules: every alert has a duration, a severity, a summary, a
// description and a runbook; its expression is made of `<expression>
// <comparison> <number>` (alone, or joined by and/or) with contract metrics
// only; every recording rule uses contract metrics too.
func TestAlertRules(t *testing.T) {
	root := repoRoot(t)
	rules, err := promrules.Load(filepath.Join(root, promRulesDir))
	if err != nil {
		t.Fatal(err)
	}
	alerts := 0
	for _, r := range rules {
		name := r.File + ": " + r.Name()
		for _, p := range checkPromQL(r.Expr) {
			t.Errorf("%s: %s", name, p)
		}
		if r.Alert == "" {
			continue
		}
		alerts++
		if r.For == "" {
			t.Errorf("%s for: got none, want a duration", name)
		}
		if s := r.Labels["severity"]; !slices.Contains([]string{"critical", "warning", "info"}, s) {
			t.Errorf("%s severity: got %q, want critical, warning or info", name, s)
		}
		for _, a := range []string{"summary", "description", "runbook_url"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("%s annotation %s: got none, want one", name, a)
			}
		}
		if _, err := promrules.Conditions(r.Expr); err != nil {
			t.Errorf("%s expr: %v", name, err)
		}
	}
	if alerts == 0 {
		t.Error("got no alerts, want some")
	}
}

// TestRunbooks: every alert's runbook_url is its own file of
// observability/runbooks/ (<alert>.md, which exists and names the alert in
// its title), and every runbook belongs to an alert.
func TestRunbooks(t *testing.T) {
	root := repoRoot(t)
	rules, err := promrules.Load(filepath.Join(root, promRulesDir))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, r := range rules {
		if r.Alert == "" {
			continue
		}
		want[r.Alert+".md"] = true
		url := r.Annotations["runbook_url"]
		if url != runbookURLBase+r.Alert+".md" {
			t.Errorf("%s runbook_url: got %q, want %q", r.Alert, url, runbookURLBase+r.Alert+".md")
		}
		b, err := os.ReadFile(filepath.Join(root, runbooksDir, r.Alert+".md"))
		if err != nil {
			t.Errorf("%s: %v", r.Alert, err)
			continue
		}
		title, _, _ := strings.Cut(string(b), "\n")
		if title != "# "+r.Alert {
			t.Errorf("%s.md title: got %q, want %q", r.Alert, title, "# "+r.Alert)
		}
		for _, section := range []string{"## Meaning", "## Impact", "## Diagnosis", "## Mitigation"} {
			if !strings.Contains(string(b), "\n"+section+"\n") {
				t.Errorf("%s.md: got no %q section, want one", r.Alert, section)
			}
		}
	}
	files, _ := filepath.Glob(filepath.Join(root, runbooksDir, "*.md"))
	for _, f := range files {
		if base := filepath.Base(f); !want[base] && base != "README.md" {
			t.Errorf("%s: got a runbook of no alert, want one per alert (%v)", base, sortedKeys(want))
		}
	}
}

// promtool finds promtool and its version. Missing: a skip, or a failure in CI.
func promtool(t *testing.T) (string, [2]int) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		testenv.Missing(t, "promtool (Debian package prometheus): %v", err)
	}
	out, err := exec.Command(path, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("promtool --version: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`version (\d+)\.(\d+)\.`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("promtool --version: got %q, want a version", out)
	}
	major, _ := strconv.Atoi(string(m[1]))
	minor, _ := strconv.Atoi(string(m[2]))
	return path, [2]int{major, minor}
}

func runPromtool(t *testing.T, bin, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		return
	}
	t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
}

// TestPromtool: both scrape configs and the rules pass promtool's checks,
// and the rules' unit tests (tests/carteiro_test.yml) pass.
func TestPromtool(t *testing.T) {
	bin, version := promtool(t)
	root := repoRoot(t)
	dir := filepath.Join(root, promDir)

	t.Run("check rules", func(t *testing.T) {
		files, _ := filepath.Glob(filepath.Join(root, promRulesDir, "*.yml"))
		runPromtool(t, bin, dir, append([]string{"check", "rules"}, files...)...)
	})
	t.Run("test rules", func(t *testing.T) {
		// One test file per rule file: rules/x.yml is tested by tests/x_test.yml.
		rules, _ := filepath.Glob(filepath.Join(root, promRulesDir, "*.yml"))
		var tests []string
		for _, r := range rules {
			test := filepath.Join(root, promRulesTestsDir, strings.TrimSuffix(filepath.Base(r), ".yml")+"_test.yml")
			if _, err := os.Stat(test); err != nil {
				t.Errorf("%s: got no unit tests (%v), want %s", filepath.Base(r), err, filepath.Base(test))
				continue
			}
			tests = append(tests, test)
		}
		runPromtool(t, bin, dir, append([]string{"test", "rules"}, tests...)...)
	})
	t.Run("check native config", func(t *testing.T) {
		tmp := t.TempDir()
		if err := os.WriteFile(filepath.Join(tmp, "prometheus.yml"), renderNativeConfig(t), 0o644); err != nil {
			t.Fatal(err)
		}
		runPromtool(t, bin, tmp, "check", "config", filepath.Join(tmp, "prometheus.yml"))
	})
	t.Run("check compose config", func(t *testing.T) {
		// scrape_protocols arrived in Prometheus 2.49; an older promtool
		// (Debian bookworm ships 2.42) checks everything else, without it.
		if version[0] > 2 || (version[0] == 2 && version[1] >= 49) {
			runPromtool(t, bin, dir, "check", "config", filepath.Join(root, promComposeConfig))
			return
		}
		b, err := os.ReadFile(filepath.Join(root, promComposeConfig))
		if err != nil {
			t.Fatal(err)
		}
		var cfg map[string]any
		if err := yaml.Unmarshal(b, &cfg); err != nil {
			t.Fatal(err)
		}
		if g, ok := cfg["global"].(map[string]any); ok {
			delete(g, "scrape_protocols")
		}
		if scs, ok := cfg["scrape_configs"].([]any); ok {
			for _, sc := range scs {
				if m, ok := sc.(map[string]any); ok {
					delete(m, "scrape_protocols")
				}
			}
		}
		cfg["rule_files"] = []string{filepath.Join(root, promRulesDir, "*.yml")}
		out, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		tmp := t.TempDir()
		if err := os.WriteFile(filepath.Join(tmp, "prometheus.yml"), out, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("promtool %d.%d predates scrape_protocols (2.49): checking %s without it", version[0], version[1], promComposeConfig)
		runPromtool(t, bin, tmp, "check", "config", filepath.Join(tmp, "prometheus.yml"))
	})
}
