// Package promrules reads carteiro's Prometheus rule files
// (observability/prometheus/rules/*.yml) and takes alert expressions apart
// into the comparisons they are made of, for the tests that hold the rules
// to their conventions (services/internal/deploy) and that evaluate every
// measured expression against a real Prometheus (services/e2e).
//
// The convention (observability/prometheus/rules/carteiro.yml): an alert's
// expression is `<expression> <comparison> <number>`, or comparisons of
// that form joined by `and`/`or` at the top level, as the multi-window
// burn-rate alerts of slo.yml are (The Site Reliability Workbook, chapter
// 5). The expression before each comparison is what the alert measures.
package promrules
