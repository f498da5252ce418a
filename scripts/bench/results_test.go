package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRatioByRound(t *testing.T) {
	drains := []deliveryRun{{Round: 1, Rate: 100}, {Round: 2, Rate: 90}, {Round: 3, Rate: 80}}
	for _, tc := range []struct {
		name     string
		ceilings []smtpRun
		want     []float64
	}{
		{"each round its own ceiling", []smtpRun{{Round: 3, Rate: 160}, {Round: 1, Rate: 200}, {Round: 2, Rate: 100}}, []float64{0.5, 0.9, 0.5}},
		{"a round without a ceiling left out", []smtpRun{{Round: 1, Rate: 200}, {Round: 3, Rate: 0}}, []float64{0.5}},
		{"no ceilings", nil, nil},
	} {
		if got := ratioByRound(drains, tc.ceilings); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestAcceptPlans(t *testing.T) {
	all16 := "json c16,json+key c16,form c16,form+key c16"
	for _, tc := range []struct {
		wide, want string
		bad        bool
	}{
		{"json+key", all16 + ",json+key c64", false},
		{"form+key, json+key", all16 + ",json+key c64,form+key c64", false},
		{"all", all16 + ",json c64,json+key c64,form c64,form+key c64", false},
		{"none", all16, false},
		{"xml", "", true},
		{"json+nokey", "", true},
	} {
		plans, err := acceptPlans([]int{16, 64}, tc.wide)
		if tc.bad {
			if err == nil {
				t.Errorf("%q: got %v, want an error", tc.wide, plans)
			}
			continue
		}
		var got []string
		for _, p := range plans {
			got = append(got, fmt.Sprintf("%s c%d", p.Variant, p.Connections))
		}
		if err != nil || strings.Join(got, ",") != tc.want {
			t.Errorf("%q: got %v (%v), want %s", tc.wide, got, err, tc.want)
		}
	}
	if _, err := loadSettings(func(k string) string { return map[string]string{"BENCH_ACCEPT_C64": "yaml"}[k] }); err == nil {
		t.Errorf("BENCH_ACCEPT_C64=yaml accepted")
	}
}

func TestChooseE2ERate(t *testing.T) {
	sets := []*acceptSet{
		{Variant: "json", Connections: 16, MedianRPS: 9000}, // not the variant phase 4 posts
		{Variant: "json+key", Connections: 16, MedianRPS: 3000},
		{Variant: "json+key", Connections: 64, MedianRPS: 4000},
		{Variant: "form+key", Connections: 16, MedianRPS: 5000},
	}
	for _, tc := range []struct {
		name       string
		sets       []*acceptSet
		smtpSource float64
		want       e2eRate
	}{
		{"accept is the smaller", sets, 5000, e2eRate{Rate: 2000, ChosenBy: "accept", HalfAccept: 2000, MaxAccept: 4000, AcceptSet: "json+key c64", SMTPSource: 4000}},
		{"smtp-source is the smaller", sets, 1000, e2eRate{Rate: 800, ChosenBy: "smtp-source", HalfAccept: 2000, MaxAccept: 4000, AcceptSet: "json+key c64", SMTPSource: 800}},
		{"a tie goes to accept", sets, 2500, e2eRate{Rate: 2000, ChosenBy: "accept", HalfAccept: 2000, MaxAccept: 4000, AcceptSet: "json+key c64", SMTPSource: 2000}},
		{"no smtp-source figure", sets[:2], 0, e2eRate{Rate: 1500, ChosenBy: "accept", HalfAccept: 1500, MaxAccept: 3000, AcceptSet: "json+key c16"}},
		{"no accept figure", sets[:1], 1000, e2eRate{Rate: 0, ChosenBy: "accept", SMTPSource: 800}},
	} {
		if got := chooseE2ERate(tc.sets, tc.smtpSource); got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestChooseDrainE2ERate(t *testing.T) {
	three := []deliveryRun{{Round: 1, Rate: 1200}, {Round: 2, Rate: 1000}, {Round: 3, Rate: 1100}}
	for _, tc := range []struct {
		name      string
		drains    []deliveryRun
		maxAccept float64
		rate      float64
		capacity  float64
		median    float64
		skip      string
	}{
		// 1 ÷ (1/4400 + 1/1100) = 880; 0.8 × 880 = 704.
		{"median of three, with accept", three, 4400, 704, 880, 1100, ""},
		{"median of three, no accept figure", three, 0, 880, 1100, 1100, ""},
		// 1 ÷ (1/500 + 1/500) = 250.
		{"median of two, accept as fast", []deliveryRun{{Round: 1, Rate: 400}, {Round: 3, Rate: 600}}, 500, 200, 250, 500, ""},
		{"exactly 1 request/s", []deliveryRun{{Round: 1, Rate: 1.25}}, 0, 1, 1.25, 1.25, ""},
		{"below 1 request/s", []deliveryRun{{Round: 1, Rate: 2}}, 2, 0.8, 1, 2, "0.8 × the capacity 1.00 msg/s is below 1 request/s"},
		{"no rate", []deliveryRun{{Round: 1}}, 1000, 0, 0, 0, "phase 3's drains measured no rate"},
		{"no drain", nil, 1000, 0, 0, 0, "phase 3 recorded no drain (it did not run, or no drain delivered every message)"},
	} {
		got, skip := chooseDrainE2ERate(tc.drains, tc.maxAccept)
		if math.Abs(got.Rate-tc.rate) > 1e-9 || math.Abs(got.Capacity-tc.capacity) > 1e-9 || got.DrainMedian != tc.median || skip != tc.skip {
			t.Errorf("%s: got rate %v capacity %v median %v skip %q, want %v %v %v %q",
				tc.name, got.Rate, got.Capacity, got.DrainMedian, skip, tc.rate, tc.capacity, tc.median, tc.skip)
		}
		if got.Source != e2eDrainSource || got.Factor != 0.8 || got.MaxAccept != tc.maxAccept || len(got.Drains) != len(tc.drains) {
			t.Errorf("%s: got source %q factor %v max accept %v drains %v, want %q 0.8 %v and one rate per drain",
				tc.name, got.Source, got.Factor, got.MaxAccept, got.Drains, e2eDrainSource, tc.maxAccept)
		}
	}
}

// TestE2ESustainedResults checks phase 4's two runs side by side in the
// results: each under its own key with its own rate choice, the skip's
// reason, and the on ÷ off ratio of each.
func TestE2ESustainedResults(t *testing.T) {
	res := benchResults()
	b, err := json.Marshal(res.Modes)
	if err != nil {
		t.Fatal(err)
	}
	var modes []map[string]json.RawMessage
	if err := json.Unmarshal(b, &modes); err != nil {
		t.Fatal(err)
	}
	var issue, pace map[string]json.RawMessage
	if err := json.Unmarshal(modes[0]["phase4_end_to_end"], &issue); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(modes[0]["phase4_end_to_end_sustained"], &pace); err != nil {
		t.Fatal(err)
	}
	if _, ok := issue["rate_choice"]; !ok {
		t.Errorf("phase4_end_to_end: got keys %v, want rate_choice", slices.Sorted(maps.Keys(issue)))
	}
	if _, ok := pace["rate_choice"]; ok {
		t.Errorf("phase4_end_to_end_sustained has issue 14's rate_choice")
	}
	var choice e2eDrainRate
	if err := json.Unmarshal(pace["drain_rate_choice"], &choice); err != nil || choice.Rate != 76 || choice.Source != e2eDrainSource {
		t.Errorf("drain_rate_choice: got %+v (%v), want rate 76 from %q", choice, err, e2eDrainSource)
	}
	for _, k := range []string{"target_rps", "accepted_to_sent_ms", "client_latency_ms", "max_queue_depth", "non_202", "transport_errors"} {
		if _, ok := pace[k]; !ok {
			t.Errorf("phase4_end_to_end_sustained: %s missing", k)
		}
	}
	var bounded map[string]json.RawMessage
	if err := json.Unmarshal(modes[0]["phase4_end_to_end_bounded"], &bounded); err != nil {
		t.Fatal(err)
	}
	if _, ok := bounded["search_choice"]; !ok {
		t.Errorf("phase4_end_to_end_bounded: got keys %v, want search_choice", slices.Sorted(maps.Keys(bounded)))
	}
	if _, ok := modes[0]["phase4_end_to_end_search"]; !ok {
		t.Errorf("off: phase4_end_to_end_search missing")
	}
	for name, run := range map[string]map[string]json.RawMessage{"phase4_end_to_end": issue, "phase4_end_to_end_sustained": pace} {
		if _, ok := run["search_choice"]; ok {
			t.Errorf("%s has the search's search_choice", name)
		}
	}
	var searchSkipped string
	if err := json.Unmarshal(modes[1]["phase4_end_to_end_search_skipped"], &searchSkipped); err != nil || searchSkipped == "" {
		t.Errorf("on: got search skip reason %q (%v), want one", searchSkipped, err)
	}
	var skipped string
	if err := json.Unmarshal(modes[1]["phase4_end_to_end_sustained_skipped"], &skipped); err != nil || skipped == "" {
		t.Errorf("on: got skip reason %q (%v), want one", skipped, err)
	}
	if _, ok := modes[1]["phase4_end_to_end_sustained"]; ok {
		t.Errorf("on: a skipped run recorded")
	}
	if _, ok := res.Comparison["e2e_sustained_p99_on_over_off"]; ok {
		t.Errorf("on ÷ off of the drain's pace without an on run")
	}
	if _, ok := res.Comparison["e2e_bounded_p99_on_over_off"]; ok {
		t.Errorf("on ÷ off of the highest bounded rate without an on run")
	}
	res.Modes[1].E2ESustained = &e2eRun{AcceptedToSentMs: latencyMs{P99: 120}}
	res.Modes[1].E2EBounded = &e2eRun{TargetRate: 36, AcceptedToSentMs: latencyMs{P99: 91.5}}
	res.compare()
	for k, want := range map[string]float64{"e2e_sustained_p99_on_over_off": 1.5, "e2e_bounded_rate_on_over_off": 0.8, "e2e_bounded_p99_on_over_off": 1.5} {
		if got := res.Comparison[k]; got != want {
			t.Errorf("%s: got %v, want %v", k, got, want)
		}
	}
}

// TestPrintTableE2E checks the table shows both of phase 4's runs, says
// which rate is the drain's pace, and why a run was skipped.
func TestPrintTableE2E(t *testing.T) {
	res := benchResults()
	res.Targets = evaluateTargets(res)
	var b strings.Builder
	printTable(&b, res)
	out := b.String()
	for _, want := range []string{
		"offered rate (issue 14's): min(½ max accept, 0.8 × smtp-source)",
		"4 at the drain's pace",
		"not issue 14's rate",
		"76 = 0.8 × 1 ÷ (1 ÷ 1200 + 1 ÷ 103 [110 103 98])",
		"skipped: phase 3 recorded no drain",
		"30 / 60 / 80 / 95",
		"80 ms at 76 req/s",
		statusInformation,
		"4 highest bounded rate",
		"45 (3 trials from 24..76; judged bounded in the search)",
		"45 yes, 60 no, 52 no (3 trials run (BENCH_E2E_SEARCH_TRIALS))",
		"20 / 40 / 61 / 70",
		"no: the last message sent 2.5 s after the load ended",
		"skipped: BENCH_E2E_SEARCH_TRIALS=0",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table: %q missing in\n%s", want, out)
		}
	}
}

func TestRSSSampledPeaks(t *testing.T) {
	var s rssSampled
	s.observe("1-2", map[string]procMem{"api": {PID: 10, RSSMiB: 30, HWMMiB: 31}, "worker": {PID: 20, RSSMiB: 20, HWMMiB: 22}})
	s.observe("3", map[string]procMem{"api": {PID: 10, RSSMiB: 40, HWMMiB: 41}, "worker": {PID: 21, RSSMiB: 18, HWMMiB: 19}})
	s.observe("4", map[string]procMem{"api": {PID: 10, RSSMiB: 35, HWMMiB: 41}, "api-2": {PID: 11, RSSMiB: 70, HWMMiB: 50}})
	for _, tc := range []struct {
		name   string
		want   rssPeak
		kind   string
		kindOK bool
		peak   float64
	}{
		{"api", rssPeak{RSSMiB: 40, Phase: "3", HWMMiB: 41, PIDs: []int{10}}, "api", true, 70},
		{"worker", rssPeak{RSSMiB: 20, Phase: "1-2", HWMMiB: 22, PIDs: []int{20, 21}}, "worker", true, 22},
	} {
		got := s.Processes[tc.name]
		if got == nil || got.RSSMiB != tc.want.RSSMiB || got.Phase != tc.want.Phase || got.HWMMiB != tc.want.HWMMiB || !slices.Equal(got.PIDs, tc.want.PIDs) {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
		if p, ok := s.peak(tc.kind); ok != tc.kindOK || p != tc.peak {
			t.Errorf("peak(%s): got %v %v, want %v", tc.kind, p, ok, tc.peak)
		}
	}
	if s.Samples != 3 {
		t.Errorf("samples: got %d, want 3", s.Samples)
	}
	if _, ok := s.peak("mailpit"); ok {
		t.Errorf("peak(mailpit) found")
	}
	var none *rssSampled
	if _, ok := none.peak("api"); ok {
		t.Errorf("peak of no sampling found")
	}
}

// TestRSSSampler samples this test's own process from /proc until stopped.
func TestRSSSampler(t *testing.T) {
	pid := os.Getpid()
	r := startRSSSampler(10*time.Millisecond, func() map[string]int { return map[string]int{"api": pid, "worker": -1} }, readProcMem)
	time.Sleep(50 * time.Millisecond)
	r.setPhase("3")
	time.Sleep(50 * time.Millisecond)
	s := r.stop()
	p := s.Processes["api"]
	if s.Samples < 2 || p == nil || p.RSSMiB <= 0 || p.HWMMiB < p.RSSMiB || !slices.Equal(p.PIDs, []int{pid}) {
		t.Fatalf("got %+v (api %+v), want samples of pid %d", s, p, pid)
	}
	if _, ok := s.Processes["worker"]; ok {
		t.Errorf("a process that does not exist was sampled")
	}
	if again := r.stop(); again.Samples != s.Samples {
		t.Errorf("a second stop sampled again: %d, then %d", s.Samples, again.Samples)
	}
}

func TestObsCheckSummaries(t *testing.T) {
	up, all, jobs, down := summarizeTargets([]jobTarget{{"carteiro-api", true}, {"carteiro-worker", true},
		{"carteiro-worker", false}, {"nginx", false}, {"otelcol", true}})
	if up != 3 || all != 5 || jobs["carteiro-worker"] != "1/2" || jobs["otelcol"] != "1/1" || !slices.Equal(down, []string{"carteiro-worker", "nginx"}) {
		t.Errorf("got %d/%d %v down %v, want 3/5, carteiro-worker 1/2, otelcol 1/1, down carteiro-worker and nginx", up, all, jobs, down)
	}
	if _, _, _, down := summarizeTargets([]jobTarget{{"otelcol", true}}); down == nil || len(down) != 0 {
		t.Errorf("no job down: got %#v, want an empty list (null in the results otherwise)", down)
	}
	for _, tc := range []struct {
		services, want []string
	}{
		{[]string{"carteiro-api", "carteiro-worker", "jaeger"}, nil},
		{[]string{"carteiro-api"}, []string{"carteiro-worker"}},
		{nil, []string{"carteiro-api", "carteiro-worker"}},
	} {
		if got := missingServices(tc.services); !slices.Equal(got, tc.want) {
			t.Errorf("missingServices(%v): got %v, want %v", tc.services, got, tc.want)
		}
	}
}
