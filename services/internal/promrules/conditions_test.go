package promrules

import (
	"path/filepath"
	"runtime"
	"slices"
	"testing"
)

func TestConditions(t *testing.T) {
	cases := []struct {
		expr string
		want []Condition // nil: an error
	}{
		{`up{job=~"a|b"} == 0`, []Condition{{`up{job=~"a|b"}`, "==", "0"}}},
		{`(sum(a) or 0 * sum(b)) / sum(b) > 0.05`, []Condition{{`(sum(a) or 0 * sum(b)) / sum(b)`, ">", "0.05"}}},
		{`deriv(sum(a)[10m:]) * (sum(a) > bool 100) > 0`, []Condition{{`deriv(sum(a)[10m:]) * (sum(a) > bool 100)`, ">", "0"}}},
		{"slo:burn_rate:1h{slo=\"x\"} > 14.4\nand\nslo:burn_rate:5m{slo=\"x\"} > 14.4",
			[]Condition{{`slo:burn_rate:1h{slo="x"}`, ">", "14.4"}, {`slo:burn_rate:5m{slo="x"}`, ">", "14.4"}}},
		{`(a > 1 and b > 1) or (c > 6 and on (slo) d > 6)`,
			[]Condition{{"a", ">", "1"}, {"b", ">", "1"}, {"c", ">", "6"}, {"d", ">", "6"}}},
		{`(x / (y > 0) and on (instance) z{p="noeviction"}) > 0.8`,
			[]Condition{{`(x / (y > 0) and on (instance) z{p="noeviction"})`, ">", "0.8"}}},
		{`label_replace(a, "dst", "$1 > or", "src", "(.*)") > 1`,
			[]Condition{{`label_replace(a, "dst", "$1 > or", "src", "(.*)")`, ">", "1"}}},
		{`a > 0 and b`, nil},     // b is no comparison
		{`a > b`, nil},           // no number
		{`a unless b > 1`, nil},  // unless
		{`a > 1 > 2`, nil},       // two comparisons
		{`sum(a) > bool 1`, nil}, // bool at the top
		{`histogram_quantile(0.99, rate(x[5m]))`, nil},
	}
	for _, c := range cases {
		got, err := Conditions(c.expr)
		if c.want == nil {
			if err == nil {
				t.Errorf("Conditions(%q): got %v, want an error", c.expr, got)
			}
			continue
		}
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("Conditions(%q): got %v, %v, want %v", c.expr, got, err, c.want)
		}
	}
}

func TestTopLevelOps(t *testing.T) {
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
		if got := TopLevelOps(expr); !slices.Equal(got, want) {
			t.Errorf("TopLevelOps(%q): got %v, want %v", expr, got, want)
		}
	}
}

// TestLoadCarteiroRules: the repository's rule files load, and every alert
// splits into comparisons.
func TestLoadCarteiroRules(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "..", "..", "observability", "prometheus", "rules")
	rules, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	alerts := 0
	for _, r := range rules {
		if (r.Alert == "") == (r.Record == "") {
			t.Errorf("%s: got alert %q record %q, want exactly one", r.File, r.Alert, r.Record)
		}
		if r.Alert == "" {
			continue
		}
		alerts++
		if _, err := Conditions(r.Expr); err != nil {
			t.Errorf("%s %s: %v", r.File, r.Alert, err)
		}
	}
	if alerts == 0 {
		t.Error("got no alerts, want some")
	}
	if _, err := Load(t.TempDir()); err == nil {
		t.Error("Load of an empty folder: got nil, want an error")
	}
}
