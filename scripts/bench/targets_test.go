package main

import (
	"strings"
	"testing"
)

// benchResults is a run with both modes, three rounds and the default
// accept runs, for the targets' tests.
func benchResults() *results {
	plans, _ := acceptPlans([]int{16, 64}, "json+key")
	acceptSets := func(rps, p99 float64) []*acceptSet {
		var sets []*acceptSet
		for _, p := range plans {
			sets = append(sets, &acceptSet{Variant: p.Variant, Connections: p.Connections,
				Runs: []acceptRun{{Round: 1, RPS: rps}}, MedianRPS: rps, MedianP99: p99, Ratio: rps / 1000})
		}
		return sets
	}
	drains := []deliveryRun{{Round: 1, Rate: 100, EmailsRows: 40_000}, {Round: 2, Rate: 95, EmailsRows: 80_000},
		{Round: 3, Rate: 91, EmailsRows: 120_000}}
	off := &modeResult{Observability: "off", CeilingMedianTPS: 1000, Accept: acceptSets(1200, 40),
		Delivery: drains, DeliveryMedian: 95, SMTPSourceMedianRate: 100, DeliveryRatioSource: 0.95,
		E2E: &e2eRun{TargetRate: 40, Sent: 400, AcceptedToSentMs: latencyMs{P99: 120}, RateChoice: &e2eRate{ChosenBy: "smtp-source"}},
		E2ESustained: &e2eRun{TargetRate: 76, Sent: 1520, AcceptedToSentMs: latencyMs{P50: 30, P90: 60, P99: 80, Max: 95},
			DrainRateChoice: &e2eDrainRate{Rate: 76, Source: e2eDrainSource, Factor: 0.8, Capacity: 95, MaxAccept: 1200,
				DrainMedian: 103.17, Drains: []float64{110, 103.17, 98}}},
		E2ESearch: &e2eSearch{Trials: []e2eTrial{{Rate: 45, Judgement: e2eJudgement{Bounded: true}}, {Rate: 60, Judgement: e2eJudgement{Failed: []string{"grew"}}},
			{Rate: 52}}, Stopped: "3 trials run (BENCH_E2E_SEARCH_TRIALS)", Rate: 45, Verified: true},
		E2EBounded: &e2eRun{TargetRate: 45, Sent: 900, AcceptedToSentMs: latencyMs{P50: 20, P90: 40, P99: 61, Max: 70},
			SearchChoice: &e2eSearchChoice{Rate: 45, Trials: 3, StartLow: 24, StartHigh: 76, Verified: true,
				Judgement: e2eJudgement{Failed: []string{"the last message sent 2.5 s after the load ended (at most 2.0 s)"}}}},
		RSSSampled: &rssSampled{Processes: map[string]*rssPeak{"api": {RSSMiB: 40, HWMMiB: 41}, "worker": {RSSMiB: 30, HWMMiB: 65}}},
		// A snapshot after the last sample saw more.
		RSS: []rssSample{{After: "4", Procs: map[string]procMem{"api": {RSSMiB: 44, HWMMiB: 45}}}}}
	on := &modeResult{Observability: "on", CeilingMedianTPS: 1000, Accept: acceptSets(1100, 60),
		Delivery: drains[:1], DeliveryMedian: 70, SMTPSourceMedianRate: 100, DeliveryRatioSource: 0.7,
		E2E:                 &e2eRun{TargetRate: 40, Sent: 400, AcceptedToSentMs: latencyMs{P99: 900}},
		E2ESustainedSkipped: "phase 3 recorded no drain (it did not run, or no drain delivered every message)",
		E2ESearchSkipped:    "BENCH_E2E_SEARCH_TRIALS=0",
		RSS:                 []rssSample{{After: "4", Procs: map[string]procMem{"api": {RSSMiB: 50, HWMMiB: 60}, "api-2": {HWMMiB: 70}}}}}
	res := &results{Settings: settings{Conns: []int{16, 64}, AcceptRuns: plans}, Modes: []*modeResult{off, on}}
	res.compare()
	// json+key c64 with observability on: 20 % less.
	res.Comparison[comparisonKey("json+key", 64)] = 0.8
	return res
}

func TestEvaluateTargets(t *testing.T) {
	got := map[string]target{}
	for _, tg := range evaluateTargets(benchResults()) {
		key := tg.Target + " | " + tg.Subject + " | " + tg.Observability
		if _, dup := got[key]; dup {
			t.Errorf("target %q twice", key)
		}
		got[key] = tg
	}
	for _, tc := range []struct {
		key, status string
		measured    float64
	}{
		{"accept ≥ 1.0× pgbench | json c16 | off", statusMet, 1.2},
		{"accept ≥ 1.0× pgbench | form+key c16 | off", statusMet, 1.2},
		{"accept p99 ≤ 50 ms at 16 connections | json+key c16 | off", statusMet, 40},
		{"observability on: accept at most 15 % less | form c16 | on ÷ off", statusMet, 1100.0 / 1200},
		{"observability on: accept at most 15 % less | json+key c64 | on ÷ off", statusNotMet, 0.8},
		{"drain ≥ 0.8× smtp-source |  | off", statusMet, 0.95},
		{"drain ≥ 0.8× smtp-source |  | on", statusNotMet, 0.7},
		{"drain flat: third round within 10 % of the first, 100k+ rows |  | off", statusMet, 0.91},
		{"drain flat: third round within 10 % of the first, 100k+ rows |  | on", statusNotMeasured, 0},
		{"accepted → sent p99 ≤ 500 ms |  | off", statusMet, 120},
		{"accepted → sent p99 ≤ 500 ms |  | on", statusNotMet, 900},
		{"accepted → sent p99 at the drain's pace (not issue 14's rate) |  | off", statusInformation, 80},
		{"accepted → sent p99 at the drain's pace (not issue 14's rate) |  | on", statusNotMeasured, 0},
		{"accepted → sent p99 at the highest bounded rate (search; not issue 14's rate) |  | off", statusInformation, 61},
		{"accepted → sent p99 at the highest bounded rate (search; not issue 14's rate) |  | on", statusNotMeasured, 0},
		{"RSS ≤ 64 MiB throughout | api | off", statusMet, 45},
		{"RSS ≤ 64 MiB throughout | worker | off", statusNotMet, 65},
		{"RSS ≤ 64 MiB throughout | api | on", statusNotMet, 70},        // from the snapshots, api-2 included
		{"RSS ≤ 64 MiB throughout | worker | on", statusNotMeasured, 0}, // no figure at all
	} {
		g, ok := got[tc.key]
		if !ok {
			t.Errorf("%s: missing", tc.key)
			continue
		}
		if g.Status != tc.status || g.Measured != tc.measured {
			t.Errorf("%s: got %s %v (%s), want %s %v", tc.key, g.Status, g.Measured, g.MeasuredText, tc.status, tc.measured)
		}
	}
	if n := len(got); n != 4*2+5+2*(1+1+1+1+1+2) {
		t.Errorf("got %d targets, want %d", n, 4*2+5+2*(1+1+1+1+1+2))
	}
	if g := got["accepted → sent p99 ≤ 500 ms |  | off"]; !strings.Contains(g.MeasuredText, "at 40 req/s (chosen by smtp-source)") {
		t.Errorf("e2e text %q does not give the rate and its term", g.MeasuredText)
	}
	if g := got["accepted → sent p99 at the drain's pace (not issue 14's rate) |  | off"]; g.Want != "none (information)" ||
		!strings.Contains(g.MeasuredText, "80 ms at 76 req/s (0.8 × 1 ÷ (1 ÷ accept 1200 + 1 ÷ drain 103 msg/s) = 0.8 × 95 msg/s)") {
		t.Errorf("drain's pace: got want %q, text %q; want no target and the rate with its source", g.Want, g.MeasuredText)
	}
	if g := got["accepted → sent p99 at the drain's pace (not issue 14's rate) |  | on"]; !strings.Contains(g.MeasuredText, "skipped: phase 3 recorded no drain") {
		t.Errorf("drain's pace skipped: got %q, want the reason", g.MeasuredText)
	}
	if g := got["accepted → sent p99 at the highest bounded rate (search; not issue 14's rate) |  | off"]; g.Want != "none (information)" ||
		!strings.Contains(g.MeasuredText, "61 ms at 45 req/s (3 trials; this run bounded: no: the last message sent 2.5 s after") {
		t.Errorf("highest bounded rate: got want %q, text %q; want no target, the rate, the trials and the run's judgement", g.Want, g.MeasuredText)
	}
	if g := got["accepted → sent p99 at the highest bounded rate (search; not issue 14's rate) |  | on"]; g.MeasuredText != "- (skipped: BENCH_E2E_SEARCH_TRIALS=0)" {
		t.Errorf("highest bounded rate skipped: got %q, want the reason", g.MeasuredText)
	}
}

func TestEvaluateTargetsOneMode(t *testing.T) {
	res := benchResults()
	res.Modes = res.Modes[1:] // observability on only
	res.Comparison = nil
	for _, tg := range evaluateTargets(res) {
		if strings.HasPrefix(tg.Target, "accept ") || strings.HasPrefix(tg.Target, "observability") {
			if tg.Status != statusNotMeasured {
				t.Errorf("%s %s: got %s, want %s without observability off", tg.Target, tg.Subject, tg.Status, statusNotMeasured)
			}
		}
	}
}

func TestDrainFlatness(t *testing.T) {
	for _, tc := range []struct {
		name          string
		drains        []deliveryRun
		ratio         float64
		met, measured bool
	}{
		{"flat", []deliveryRun{{Round: 1, Rate: 100}, {Round: 3, Rate: 95, EmailsRows: 150_000}}, 0.95, true, true},
		{"fell", []deliveryRun{{Round: 1, Rate: 100}, {Round: 3, Rate: 50, EmailsRows: 150_000}}, 0.5, false, true},
		{"rose past 10 %", []deliveryRun{{Round: 1, Rate: 100}, {Round: 3, Rate: 120, EmailsRows: 150_000}}, 1.2, false, true},
		{"exactly 10 % less", []deliveryRun{{Round: 1, Rate: 100}, {Round: 3, Rate: 90, EmailsRows: 100_000}}, 0.9, true, true},
		{"too few rows", []deliveryRun{{Round: 1, Rate: 100}, {Round: 3, Rate: 100, EmailsRows: 99_999}}, 1, false, false},
		{"one round", []deliveryRun{{Round: 1, Rate: 100}}, 0, false, false},
		{"no first round", []deliveryRun{{Round: 2, Rate: 100}, {Round: 3, Rate: 100, EmailsRows: 200_000}}, 0, false, false},
	} {
		f := drainFlatness(tc.drains)
		if f.ratio != tc.ratio || f.met != tc.met || f.measured != tc.measured {
			t.Errorf("%s: got %+v, want ratio %v met %v measured %v", tc.name, f, tc.ratio, tc.met, tc.measured)
		}
	}
}
