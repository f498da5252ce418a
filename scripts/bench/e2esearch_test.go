package main

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// steady is n polls every 0.5 s from 0.5 s, each waiting f(t).
func steady(n int, f func(t float64) float64) []depthSample {
	s := make([]depthSample, n)
	for i := range s {
		t := 0.5 * float64(i+1)
		s[i] = depthSample{AtS: t, Waiting: f(t)}
	}
	return s
}

func TestCriterionJudge(t *testing.T) {
	c := boundedCriterion()
	flat := func(float64) float64 { return 300 }
	// A load of 10 s at 1000/s: the tail is 5..10 s, the limits 1000
	// waiting and 500 of growth over the tail's 5 s, 100/s.
	base := e2eObservation{Rate: 1000, DurationS: 10, Requests: 10000, Accepted: 10000, Waiting: steady(20, flat), SentAfterLoadS: 0.4}
	for _, tc := range []struct {
		name    string
		change  func(o *e2eObservation)
		bounded bool
		failed  []string // a part of each failed condition, in order
	}{
		{"steady queue", func(*e2eObservation) {}, true, nil},
		{"a deep warm-up before the tail does not count", func(o *e2eObservation) {
			o.Waiting = steady(20, func(t float64) float64 { return map[bool]float64{true: 5000, false: 300}[t < 5] })
		}, true, nil},
		{"exactly a second of arrivals", func(o *e2eObservation) { o.Waiting = steady(20, func(float64) float64 { return 1000 }) }, true, nil},
		{"more than a second of arrivals", func(o *e2eObservation) {
			o.Waiting = steady(20, func(t float64) float64 { return map[bool]float64{true: 1001, false: 300}[t == 7] })
		}, false, []string{"waiting reached 1001 after 5.0 s (at most 1000"}},
		{"growing, still under a second", func(o *e2eObservation) { o.Waiting = steady(20, func(t float64) float64 { return 150 * t }) },
			false, []string{"waiting reached 1500", "waiting grew by 150/s"}},
		{"growing slowly", func(o *e2eObservation) { o.Waiting = steady(20, func(t float64) float64 { return 50 + 80*t }) }, true, nil},
		{"growing past 10 % of the rate, under a second", func(o *e2eObservation) {
			o.Waiting = steady(20, func(t float64) float64 { return 120 * (t - 5) })
		}, false, []string{"waiting grew by 120/s after 5.0 s (at most 100/s: 0.5 s of arrivals over the 5 s judged)"}},
		{"a longer run is held to the same growth over its tail", func(o *e2eObservation) {
			o.DurationS, o.Requests, o.Accepted = 60, 60000, 60000
			o.Waiting = steady(120, func(t float64) float64 { return 20 * (t - 30) })
		}, false, []string{"waiting grew by 20/s after 30.0 s (at most 17/s: 0.5 s of arrivals over the 30 s judged)"}},
		{"a longer run growing within it", func(o *e2eObservation) {
			o.DurationS, o.Requests, o.Accepted = 60, 60000, 60000
			o.Waiting = steady(120, func(t float64) float64 { return 15 * (t - 30) })
		}, true, nil},
		{"polls after the load are not the load's", func(o *e2eObservation) {
			o.Waiting = append(o.Waiting, depthSample{AtS: 10.5, Waiting: 9000})
		}, true, nil},
		{"too few polls in the tail", func(o *e2eObservation) { o.Waiting = o.Waiting[:11] }, false, []string{"2 depth poll(s) in the last 50 %"}},
		{"no polls at all", func(o *e2eObservation) { o.Waiting = nil }, false, []string{"0 depth poll(s)"}},
		{"slow to drain after the load", func(o *e2eObservation) { o.SentAfterLoadS = 2.5 }, false, []string{"sent 2.5 s after the load ended (at most 2.0 s)"}},
		{"late starts", func(o *e2eObservation) { o.Late = 101 }, false, []string{"101 of 10000 requests started late"}},
		{"1 % late starts", func(o *e2eObservation) { o.Late = 100 }, true, nil},
		{"a failed request", func(o *e2eObservation) { o.Errors = 1 }, false, []string{"1 request(s) failed"}},
		{"nothing accepted", func(o *e2eObservation) { o.Accepted = 0 }, false, []string{"nothing accepted"}},
	} {
		o := base
		o.Waiting = slices.Clone(base.Waiting)
		tc.change(&o)
		j := c.judge(o)
		if j.Bounded != tc.bounded || len(j.Failed) != len(tc.failed) {
			t.Errorf("%s: got bounded %v, failed %q, want %v, %d failed", tc.name, j.Bounded, j.Failed, tc.bounded, len(tc.failed))
			continue
		}
		for i, want := range tc.failed {
			if !strings.Contains(j.Failed[i], want) {
				t.Errorf("%s: failed[%d] got %q, want %q in it", tc.name, i, j.Failed[i], want)
			}
		}
	}
	run := e2eRun{TargetRate: base.Rate, DurationS: base.DurationS, Requests: base.Requests, Accepted: base.Accepted,
		waiting: base.Waiting, sentAfterLoadS: base.SentAfterLoadS}
	if j := c.judgeRun(run, nil); !j.Bounded || len(j.Failed) != 0 {
		t.Errorf("a run that did not break: got bounded %v, failed %q, want bounded", j.Bounded, j.Failed)
	}
	if j := c.judgeRun(run, errors.New("stack down")); j.Bounded || len(j.Failed) != 1 || j.Failed[0] != "the run broke: stack down" {
		t.Errorf("a run that broke: got bounded %v, failed %q, want not bounded, failed [the run broke: stack down]", j.Bounded, j.Failed)
	}
	j := c.judge(base)
	if j.TailFromS != 5 || j.TailSamples != 11 || j.TailMaxWaiting != 300 || j.WaitingLimit != 1000 || j.GrowthLimitPerS != 100 || j.TailGrowthPerS != 0 {
		t.Errorf("figures: got %+v, want tail from 5 s, 11 polls, max 300, limits 1000 and 100/s, no growth", j)
	}
}

func TestSlope(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    []depthSample
		want float64
	}{
		{"none", nil, 0},
		{"one", []depthSample{{1, 5}}, 0},
		{"same time", []depthSample{{1, 5}, {1, 9}}, 0},
		{"rising", []depthSample{{0, 0}, {1, 10}, {2, 20}}, 10},
		{"falling", []depthSample{{0, 40}, {2, 0}}, -20},
		{"noisy flat", []depthSample{{0, 10}, {1, 20}, {2, 10}, {3, 20}, {4, 10}, {5, 20}, {6, 10}}, 0},
	} {
		if got := slope(tc.s); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestNextSearchRate(t *testing.T) {
	for _, tc := range []struct {
		name string
		st   e2eSearchState
		rate float64
		done bool
	}{
		{"geometric mean", e2eSearchState{Lo: 250, Hi: 1000}, 500, false},
		{"geometric mean above a bounded low", e2eSearchState{Lo: 400, Hi: 900, LoBounded: true}, 600, false},
		{"converged", e2eSearchState{Lo: 1000, Hi: 1100, LoBounded: true}, 0, true},
		{"converged, low never judged: try it", e2eSearchState{Lo: 1000, Hi: 1100}, 1000, false},
		{"within twice an unjudged low: try it", e2eSearchState{Lo: 125, Hi: 250}, 125, false},
		{"past twice an unjudged low: the mean", e2eSearchState{Lo: 100, Hi: 225}, 150, false},
		{"just outside the precision", e2eSearchState{Lo: 1000, Hi: 1210, LoBounded: true}, 1100, false},
		{"below one request a second", e2eSearchState{Lo: 0.5, Hi: 0.55}, 0, true},
		{"the mean below one request a second", e2eSearchState{Lo: 0.25, Hi: 2}, 0, true},
		{"a judged low below one request a second, the mean above", e2eSearchState{Lo: 0.5, Hi: 8, LoBounded: true}, 2, false},
	} {
		rate, done, why := nextSearchRate(tc.st)
		if done != tc.done || (!done && abs(rate-tc.rate) > 1e-9) || (done && why == "") {
			t.Errorf("%s: got %v %v %q, want %v %v", tc.name, rate, done, why, tc.rate, tc.done)
		}
	}
}

func abs(x float64) float64 { return max(x, -x) }

func TestSearchStateAfter(t *testing.T) {
	for _, tc := range []struct {
		name    string
		st      e2eSearchState
		rate    float64
		bounded bool
		want    e2eSearchState
	}{
		{"bounded: new low", e2eSearchState{Lo: 250, Hi: 1000}, 500, true, e2eSearchState{Lo: 500, Hi: 1000, LoBounded: true}},
		{"not bounded: new high", e2eSearchState{Lo: 250, Hi: 1000}, 500, false, e2eSearchState{Lo: 250, Hi: 500}},
		{"not bounded keeps a judged low", e2eSearchState{Lo: 250, Hi: 1000, LoBounded: true}, 500, false, e2eSearchState{Lo: 250, Hi: 500, LoBounded: true}},
		{"the low itself not bounded: the bracket moves down", e2eSearchState{Lo: 250, Hi: 270}, 250, false, e2eSearchState{Lo: 125, Hi: 250}},
		{"the low itself bounded", e2eSearchState{Lo: 250, Hi: 270}, 250, true, e2eSearchState{Lo: 250, Hi: 270, LoBounded: true}},
		{"bounded below a judged low: nothing new", e2eSearchState{Lo: 400, Hi: 600, LoBounded: true}, 300, true, e2eSearchState{Lo: 400, Hi: 600, LoBounded: true}},
		{"bounded above the high: the bracket closes there", e2eSearchState{Lo: 400, Hi: 600}, 700, true, e2eSearchState{Lo: 700, Hi: 700, LoBounded: true}},
	} {
		if got := tc.st.after(tc.rate, tc.bounded); got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// TestSearchConverges runs the search's choice and update against a
// stack that keeps up below a given rate: it ends within the precision,
// in as few trials as the bracket's ratio needs.
func TestSearchConverges(t *testing.T) {
	for _, tc := range []struct {
		name      string
		start     e2eSearchState
		limit     float64 // the stack keeps up at or below it
		maxTrials int
		found     float64 // at most the limit, within the precision
		bounded   bool
	}{
		{"between the bounds", e2eSearchState{Lo: 250, Hi: 800}, 600, 4, 600, true},
		{"at the low bound", e2eSearchState{Lo: 250, Hi: 800}, 260, 5, 260, true},
		{"below the low bound", e2eSearchState{Lo: 250, Hi: 800}, 100, 7, 100, true},
		{"far below the low bound", e2eSearchState{Lo: 250, Hi: 800}, 20, 10, 20, true},
		{"below the low bound, too few trials", e2eSearchState{Lo: 250, Hi: 800}, 100, 3, 0, false},
	} {
		st, trials := tc.start, 0
		for {
			rate, done, _ := nextSearchRate(st)
			if done || trials == tc.maxTrials {
				break
			}
			trials++
			st = st.after(rate, rate <= tc.limit)
		}
		if st.LoBounded != tc.bounded || (tc.bounded && (st.Lo > tc.limit || st.Lo < tc.found/(1+e2eSearchPrecision))) {
			t.Errorf("%s: got %+v after %d trials, want a judged low within %.0f %% under %v", tc.name, st, trials, e2eSearchPrecision*100, tc.found)
		}
	}
}

func TestSearchStart(t *testing.T) {
	bounded := e2eJudgement{Bounded: true}
	unbounded := e2eJudgement{Failed: []string{"grew"}}
	for _, tc := range []struct {
		name              string
		judged            []e2eJudged
		capacity, accept  float64
		want              e2eSearchState
		lowFrom, highFrom string
		skip              bool
	}{
		{"both runs not bounded", []e2eJudged{{"issue 14's rate", 1677, unbounded}, {"the drain's pace", 1027, unbounded}}, 1284, 4950,
			e2eSearchState{Lo: 321, Hi: 1027}, "0.25 × the capacity estimate 1284 msg/s", "the drain's pace (not bounded)", false},
		{"the drain's pace bounded", []e2eJudged{{"issue 14's rate", 1677, unbounded}, {"the drain's pace", 639, bounded}}, 798, 4950,
			e2eSearchState{Lo: 639, Hi: 1677, LoBounded: true}, "the drain's pace (bounded)", "issue 14's rate (not bounded)", false},
		{"both bounded: up to the accept rate", []e2eJudged{{"issue 14's rate", 800, bounded}, {"the drain's pace", 500, bounded}}, 700, 1600,
			e2eSearchState{Lo: 800, Hi: 1600, LoBounded: true}, "issue 14's rate (bounded)", "phase 2's highest median json+key accept rate", false},
		{"a bounded run above the unbounded one is noise", []e2eJudged{{"issue 14's rate", 1200, bounded}, {"the drain's pace", 900, unbounded}}, 1000, 4000,
			e2eSearchState{Lo: 250, Hi: 900}, "0.25 × the capacity estimate 1000 msg/s", "the drain's pace (not bounded)", false},
		{"no runs, no capacity", nil, 0, 1000, e2eSearchState{Lo: 250, Hi: 1000}, "a quarter of the high bound", "phase 2's highest median json+key accept rate", false},
		{"a capacity above the high bound", []e2eJudged{{"issue 14's rate", 100, unbounded}}, 1000, 4000,
			e2eSearchState{Lo: 25, Hi: 100}, "a quarter of the high bound", "issue 14's rate (not bounded)", false},
		{"nothing measured", nil, 0, 0, e2eSearchState{}, "", "", true},
	} {
		st, lowFrom, highFrom, skip := searchStart(tc.judged, tc.capacity, tc.accept)
		if (skip != "") != tc.skip || (!tc.skip && (st != tc.want || lowFrom != tc.lowFrom || highFrom != tc.highFrom)) {
			t.Errorf("%s: got %+v, %q, %q, skip %q, want %+v, %q, %q, skip %v", tc.name, st, lowFrom, highFrom, skip, tc.want, tc.lowFrom, tc.highFrom, tc.skip)
		}
	}
}

func TestLoadSettingsSearch(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	for _, tc := range []struct {
		name   string
		env    map[string]string
		trials int
		dur    time.Duration
		bad    bool
	}{
		{"defaults", nil, 5, 10 * time.Second, false},
		{"off", map[string]string{"BENCH_E2E_SEARCH_TRIALS": "0"}, 0, 10 * time.Second, false},
		{"sized", map[string]string{"BENCH_E2E_SEARCH_TRIALS": "3", "BENCH_E2E_SEARCH_DURATION": "6s"}, 3, 6 * time.Second, false},
		{"the shortest trial", map[string]string{"BENCH_E2E_SEARCH_DURATION": "4s"}, 5, 4 * time.Second, false},
		{"a trial too short to judge", map[string]string{"BENCH_E2E_SEARCH_DURATION": "3s"}, 0, 0, true},
		{"not a duration", map[string]string{"BENCH_E2E_SEARCH_DURATION": "ten"}, 0, 0, true},
		{"negative trials", map[string]string{"BENCH_E2E_SEARCH_TRIALS": "-1"}, 0, 0, true},
		{"too many trials", map[string]string{"BENCH_E2E_SEARCH_TRIALS": "21"}, 0, 0, true},
	} {
		s, err := loadSettings(env(tc.env))
		switch {
		case tc.bad && err == nil:
			t.Errorf("%s: got settings %d trials of %s, want an error", tc.name, s.E2ESearchTrials, s.E2ESearchDuration)
		case tc.bad && !strings.Contains(err.Error(), "BENCH_E2E_SEARCH_"):
			t.Errorf("%s: got %v, want the variable named", tc.name, err)
		case !tc.bad && (err != nil || s.E2ESearchTrials != tc.trials || s.E2ESearchDuration.D() != tc.dur):
			t.Errorf("%s: got %d trials of %s (%v), want %d of %s", tc.name, s.E2ESearchTrials, s.E2ESearchDuration, err, tc.trials, tc.dur)
		}
	}
}
