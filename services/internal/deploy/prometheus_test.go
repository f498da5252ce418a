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
	"github.com/carteiro/carteiro/services/internal/testenv"
)

const (
	promDir            = "observability/prometheus"
	promComposeConfig  = promDir + "/prometheus.yml"
	promNativeTemplate = promDir + "/prometheus.native.yml.template"
	promRulesDir       = promDir + "/rules"
	promRulesTest      = promDir + "/tests/carteiro_test.yml"
)

// nativePlaceholders are the ${...} of prometheus.native.yml.template, with
// test values. The native stack (package devstack) renders the template
// with these names.
var nativePlaceholders = map[string]string{
	"API_METRICS_TARGET":    "127.0.0.1:9101",
	"WORKER_METRICS_TARGET": "127.0.0.1:9102",
	"NGINX_EXPORTER_TARGET": "127.0.0.1:9113",
	"SCRAPE_INTERVAL":       "5s",
	"RULES_DIR":             "", // set by renderNativeConfig
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
	RuleFiles     []string `yaml:"rule_files"`
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
	exporterPort := ""
	for _, arg := range merged.Services["nginx-exporter"].Command {
		if v, ok := strings.CutPrefix(arg, "--web.listen-address="); ok {
			_, exporterPort, _ = net.SplitHostPort(v)
		}
	}
	wantCompose := map[string][]string{
		"carteiro-api":    {"/metrics", "app:" + port("app", "INTERNAL_ADDR")},
		"carteiro-worker": {"/metrics", "worker:" + port("worker", "INTERNAL_ADDR")},
		"nginx":           {"/metrics", "nginx-exporter:" + exporterPort},
		"prometheus":      {"", "127.0.0.1:9090"},
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
		"carteiro-api":    {"/metrics", nativePlaceholders["API_METRICS_TARGET"]},
		"carteiro-worker": {"/metrics", nativePlaceholders["WORKER_METRICS_TARGET"]},
		"nginx":           {"/metrics", nativePlaceholders["NGINX_EXPORTER_TARGET"]},
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

// trailingComparisonRe splits an alert expression into the measured
// expression and its threshold: `<expression> <comparison> <number>`.
var trailingComparisonRe = regexp.MustCompile(`(?s)^(.*\S)\s*(==|!=|>=|<=|>|<)\s*(-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)\s*$`)

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// TestAlertRules: every alert has a duration, a severity and both
// annotations; its expression is `<expression> <comparison> <number>` with
// contract metrics only.
func TestAlertRules(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(repoRoot(t), promRulesDir, "*.yml"))
	if len(files) == 0 {
		t.Fatal("no rule files")
	}
	alerts := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var rf ruleFile
		if err := yaml.Unmarshal(b, &rf); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				name := filepath.Base(f) + ": " + r.Alert + r.Record
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
				for _, a := range []string{"summary", "description"} {
					if strings.TrimSpace(r.Annotations[a]) == "" {
						t.Errorf("%s annotation %s: got none, want one", name, a)
					}
				}
				m := trailingComparisonRe.FindStringSubmatch(strings.TrimSpace(r.Expr))
				if m == nil {
					t.Errorf("%s expr: got %q, want `<expression> <comparison> <number>`", name, r.Expr)
					continue
				}
				// The comparison must be the top-level operator: with a
				// trailing `and`/`or`/`unless` or a second comparison the left
				// side alone would answer another question.
				if ops := topLevelOps(m[1]); len(ops) > 0 {
					t.Errorf("%s expr: got %v at the top level of %q, want only the final comparison", name, ops, m[1])
				}
			}
		}
	}
	if alerts == 0 {
		t.Error("got no alerts, want some")
	}
}

// topLevelOps returns the set operators (and, or, unless) and comparisons
// of expr outside any brackets and string literals.
func topLevelOps(expr string) []string {
	var ops []string
	depth := 0
	word := regexp.MustCompile(`^(and|or|unless)\b`)
	for i := 0; i < len(expr); i++ {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for j < len(expr) && expr[j] != c {
				if expr[j] == '\\' {
					j++
				}
				j++
			}
			i = j
		case strings.IndexByte("([{", c) >= 0:
			depth++
		case strings.IndexByte(")]}", c) >= 0:
			depth--
		case depth != 0:
		case strings.IndexByte("<>!=", c) >= 0:
			op := string(c)
			if i+1 < len(expr) && expr[i+1] == '=' {
				op += "="
				i++
			}
			if op != "=" { // `=` alone only appears in matchers, inside braces
				ops = append(ops, op)
			}
		case (i == 0 || !isIdent(expr[i-1])) && word.MatchString(expr[i:]):
			w := word.FindString(expr[i:])
			ops = append(ops, w)
			i += len(w) - 1
		}
	}
	return ops
}

func isIdent(c byte) bool {
	return c == '_' || c == ':' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func TestTopLevelOpsHelper(t *testing.T) {
	cases := map[string][]string{
		`sum(rate(x{code=~"5.."}[5m])) / sum(rate(x[5m]))`: nil,
		`(sum(a) or 0 * sum(b)) / sum(b)`:                  nil,
		`deriv(sum(a)[10m:]) * (sum(a) > bool 100)`:        nil,
		`up{job=~"a|b"}`:        nil,
		`a > 0 and b`:           {">", "and"},
		`a unless on(x) b`:      {"unless"},
		`sum by (operator) (a)`: nil,
		`label_replace(a, "dst", "$1 > or", "src", "(.*)") or vector(0)`: {"or"},
	}
	for expr, want := range cases {
		if got := topLevelOps(expr); !slices.Equal(got, want) {
			t.Errorf("topLevelOps(%q): got %v, want %v", expr, got, want)
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
		runPromtool(t, bin, dir, "test", "rules", filepath.Join(root, promRulesTest))
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
