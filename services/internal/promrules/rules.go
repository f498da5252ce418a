package promrules

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"go.yaml.in/yaml/v3"
)

// Rule is one recording or alerting rule of a rule file.
type Rule struct {
	File  string // the file's base name, e.g. slo.yml
	Group string
	// Alert or Record names the rule; exactly one is set.
	Alert, Record string
	Expr          string
	For           string
	Labels        map[string]string
	Annotations   map[string]string
}

// Name is the alert's or the recorded series' name.
func (r Rule) Name() string { return r.Alert + r.Record }

// Load reads every *.yml file of dir, in name order, and returns their
// rules in file order. A folder without rule files is an error.
func Load(dir string) ([]Rule, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no rule files (*.yml) in %s", dir)
	}
	sort.Strings(files)
	var out []Rule
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var doc struct {
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
		if err := yaml.Unmarshal(b, &doc); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		for _, g := range doc.Groups {
			for _, r := range g.Rules {
				out = append(out, Rule{File: filepath.Base(f), Group: g.Name, Alert: r.Alert, Record: r.Record,
					Expr: r.Expr, For: r.For, Labels: r.Labels, Annotations: r.Annotations})
			}
		}
	}
	return out, nil
}
