package promrules

import (
	"fmt"
	"regexp"
	"strings"
)

// Condition is one comparison of an alert expression: Measured Op
// Threshold, e.g. `slo:burn_rate:1h{slo="delivery-success"}` `>` `14.4`.
type Condition struct {
	Measured  string
	Op        string // ==, !=, >, <, >= or <=
	Threshold string // a number literal
}

// trailingComparison splits `<expression> <comparison> <number>`.
var trailingComparison = regexp.MustCompile(`(?s)^(.*\S)\s*(==|!=|>=|<=|>|<)\s*(-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)\s*$`)

// matchingModifier is the vector matching that may open the right-hand
// operand of `and`/`or`: on (...) or ignoring (...).
var matchingModifier = regexp.MustCompile(`^(?:on|ignoring)\s*\([^)]*\)\s*`)

// Conditions splits an alert expression into its comparisons: the
// operands of its top-level `and`/`or` (bracketed groups of them too), each `<expression> <comparison>
// <number>` with no other comparison or set operator outside brackets.
// Anything else (`unless`, a comparison between two expressions, `bool`
// at the top, a trailing filter) is an error naming the operand.
func Conditions(expr string) ([]Condition, error) {
	var out []Condition
	parts := splitSetOps(stripParens(strings.TrimSpace(expr)))
	for _, operand := range parts {
		operand = stripParens(strings.TrimSpace(matchingModifier.ReplaceAllString(strings.TrimSpace(operand), "")))
		if len(parts) > 1 && len(splitSetOps(operand)) > 1 {
			// A bracketed group of its own: (a > 1 and b > 1) or (...).
			cs, err := Conditions(operand)
			if err != nil {
				return nil, err
			}
			out = append(out, cs...)
			continue
		}
		m := trailingComparison.FindStringSubmatch(operand)
		if m == nil {
			return nil, fmt.Errorf("%q is not `<expression> <comparison> <number>`", operand)
		}
		if ops := TopLevelOps(m[1]); len(ops) > 0 {
			return nil, fmt.Errorf("%q: got %v at the top level of the measured expression, want only the final comparison", operand, ops)
		}
		if strings.HasSuffix(strings.TrimSpace(m[1]), " bool") {
			return nil, fmt.Errorf("%q: a `bool` comparison measures nothing", operand)
		}
		out = append(out, Condition{Measured: strings.TrimSpace(m[1]), Op: m[2], Threshold: m[3]})
	}
	return out, nil
}

// splitSetOps splits expr at its top-level `and` and `or`. An `unless`
// stays inside its operand (and fails Conditions' checks).
func splitSetOps(expr string) []string {
	var parts []string
	start := 0
	scan(expr, func(i int, op string) {
		if op == "and" || op == "or" {
			parts = append(parts, expr[start:i])
			start = i + len(op)
		}
	})
	return append(parts, expr[start:])
}

// stripParens removes brackets that enclose the whole of expr.
func stripParens(expr string) string {
	for len(expr) >= 2 && expr[0] == '(' && expr[len(expr)-1] == ')' {
		depth, encloses := 0, true
		scanBrackets(expr, func(i, d int) {
			if d == 0 && i < len(expr)-1 {
				encloses = false
			}
			depth = d
		})
		if !encloses || depth != 0 {
			return expr
		}
		expr = strings.TrimSpace(expr[1 : len(expr)-1])
	}
	return expr
}

// TopLevelOps returns the set operators (and, or, unless) and comparisons
// of expr outside any brackets and string literals, in order.
func TopLevelOps(expr string) []string {
	var ops []string
	scan(expr, func(_ int, op string) { ops = append(ops, op) })
	return ops
}

var setOpWord = regexp.MustCompile(`^(and|or|unless)\b`)

// scan calls fn with the position and text of every top-level set
// operator and comparison of expr.
func scan(expr string, fn func(i int, op string)) {
	depth := 0
	for i := 0; i < len(expr); i++ {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			i = skipString(expr, i)
		case strings.IndexByte("([{", c) >= 0:
			depth++
		case strings.IndexByte(")]}", c) >= 0:
			depth--
		case depth != 0:
		case strings.IndexByte("<>!=", c) >= 0:
			op := string(c)
			if i+1 < len(expr) && expr[i+1] == '=' {
				op += "="
			}
			if op != "=" { // `=` alone only appears in matchers, inside braces
				fn(i, op)
			}
			i += len(op) - 1
		case (i == 0 || !isIdent(expr[i-1])) && setOpWord.MatchString(expr[i:]):
			w := setOpWord.FindString(expr[i:])
			fn(i, w)
			i += len(w) - 1
		}
	}
}

// scanBrackets calls fn with the position and the depth after every
// bracket of expr outside string literals.
func scanBrackets(expr string, fn func(i, depth int)) {
	depth := 0
	for i := 0; i < len(expr); i++ {
		switch c := expr[i]; {
		case c == '"' || c == '\'' || c == '`':
			i = skipString(expr, i)
		case strings.IndexByte("([{", c) >= 0:
			depth++
			fn(i, depth)
		case strings.IndexByte(")]}", c) >= 0:
			depth--
			fn(i, depth)
		}
	}
}

// skipString returns the position of the quote that closes the string
// literal opened at i.
func skipString(expr string, i int) int {
	q, j := expr[i], i+1
	for j < len(expr) && expr[j] != q {
		if expr[j] == '\\' && q != '`' {
			j++
		}
		j++
	}
	return j
}

func isIdent(c byte) bool {
	return c == '_' || c == ':' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
