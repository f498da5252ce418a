package devstack

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// RulesDir is the folder of rule files Prometheus loads: the repository's
// observability/prometheus/rules, or, with a window scale above 1, the
// scaled copy RenderRules writes in the stack's folder.
func (c Config) RulesDir() string {
	if c.Prometheus.RulesWindowScale > 1 {
		return filepath.Join(c.Dir, "prometheus-rules")
	}
	return c.repoRulesDir()
}

func (c Config) repoRulesDir() string {
	return filepath.Join(c.Root, "observability", "prometheus", "rules")
}

// RenderRules writes, for a window scale above 1 (PROMETHEUS_RULES_WINDOW_SCALE),
// every rule file of the repository into RulesDir with each duration of
// its rules divided by the scale: range selectors and subqueries ([1h],
// [10m:1m]), offsets, `for` and `keep_firing_for`. A test can so see an
// alert with the workbook's hour-long windows fire within a minute; the
// files in the repository keep their durations. A scale of 1 writes
// nothing.
func (c Config) RenderRules() error {
	scale := c.Prometheus.RulesWindowScale
	if scale <= 1 {
		return nil
	}
	files, err := filepath.Glob(filepath.Join(c.repoRulesDir(), "*.yml"))
	if err != nil {
		return err
	}
	out := c.RulesDir()
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		scaled, err := ScaleRuleWindows(b, scale)
		if err != nil {
			return fmt.Errorf("%s (PROMETHEUS_RULES_WINDOW_SCALE): %w", f, err)
		}
		if err := writeFileAtomic(filepath.Join(out, filepath.Base(f)), scaled); err != nil {
			return err
		}
	}
	return nil
}

// ScaleRuleWindows returns a Prometheus rule file with every duration of
// its rules divided by scale (see RenderRules). Durations are Prometheus's
// (1h30m, 5m, 28d: ms, s, m, h, d, w, y); a result under a millisecond is
// one millisecond.
func ScaleRuleWindows(file []byte, scale int) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(file, &doc); err != nil {
		return nil, err
	}
	var walkErr error
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				if v.Kind != yaml.ScalarNode {
					continue
				}
				switch k.Value {
				case "expr":
					v.Value = scaleExprDurations(v.Value, scale)
				case "for", "keep_firing_for":
					d, err := parsePromDuration(v.Value)
					if err != nil {
						walkErr = fmt.Errorf("%s %q: %w", k.Value, v.Value, err)
						continue
					}
					v.Value = formatPromDuration(d / time.Duration(scale))
				}
			}
		}
		for _, child := range n.Content {
			walk(child)
		}
	}
	walk(&doc)
	if walkErr != nil {
		return nil, walkErr
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	return buf.Bytes(), enc.Close()
}

const promDurationPattern = `(?:[0-9]+(?:ms|s|m|h|d|w|y))+`

var (
	// [range], [range:] and [range:resolution], at the start of the text.
	rangeRe = regexp.MustCompile(`^\[\s*(` + promDurationPattern + `)\s*(?:(:)\s*(` + promDurationPattern + `)?\s*)?\]`)
	// offset <duration>, at the start of the text.
	offsetRe       = regexp.MustCompile(`^offset(\s+)(-?)(` + promDurationPattern + `)\b`)
	durationPartRe = regexp.MustCompile(`([0-9]+)(ms|s|m|h|d|w|y)`)
)

// scaleExprDurations divides the ranges, subquery resolutions and offsets
// of a PromQL expression by scale, leaving string literals alone.
func scaleExprDurations(expr string, scale int) string {
	div := func(s string) string {
		d, _ := parsePromDuration(s) // the pattern matched: it parses
		return formatPromDuration(d / time.Duration(scale))
	}
	var b strings.Builder
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for j < len(expr) && expr[j] != c {
				if expr[j] == '\\' && c != '`' {
					j++
				}
				j++
			}
			j = min(j+1, len(expr))
			b.WriteString(expr[i:j])
			i = j
			continue
		case c == '[':
			if m := rangeRe.FindStringSubmatch(expr[i:]); m != nil {
				b.WriteString("[" + div(m[1]) + m[2])
				if m[3] != "" {
					b.WriteString(div(m[3]))
				}
				b.WriteString("]")
				i += len(m[0])
				continue
			}
		case c == 'o' && (i == 0 || !isPromIdent(expr[i-1])):
			if m := offsetRe.FindStringSubmatch(expr[i:]); m != nil {
				b.WriteString("offset" + m[1] + m[2] + div(m[3]))
				i += len(m[0])
				continue
			}
		}
		b.WriteByte(c)
		i++
	}
	return b.String()
}

func isPromIdent(c byte) bool {
	return c == '_' || c == ':' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

var promUnits = map[string]time.Duration{
	"ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour,
	"d": 24 * time.Hour, "w": 7 * 24 * time.Hour, "y": 365 * 24 * time.Hour,
}

// parsePromDuration parses a Prometheus duration (1h30m, 28d, 500ms).
func parsePromDuration(s string) (time.Duration, error) {
	if !regexp.MustCompile(`^` + promDurationPattern + `$`).MatchString(s) {
		return 0, fmt.Errorf("not a Prometheus duration")
	}
	var d time.Duration
	for _, m := range durationPartRe.FindAllStringSubmatch(s, -1) {
		n, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil {
			return 0, err
		}
		d += time.Duration(n) * promUnits[m[2]]
	}
	return d, nil
}

// formatPromDuration writes d as a Prometheus duration in days, hours,
// minutes, seconds and milliseconds (72m is 1h12m); at least 1ms.
func formatPromDuration(d time.Duration) string {
	d = max(d.Truncate(time.Millisecond), time.Millisecond)
	var b strings.Builder
	for _, u := range []struct {
		name string
		d    time.Duration
	}{{"d", 24 * time.Hour}, {"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}, {"ms", time.Millisecond}} {
		if n := d / u.d; n > 0 {
			b.WriteString(strconv.FormatInt(int64(n), 10) + u.name)
			d -= n * u.d
		}
	}
	return b.String()
}
