package main

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Phase 4's search: the highest offered rate at which the stack, accepting
// and delivering at once, keeps its queue bounded, and the accepted → sent
// latency at that rate. Issue 14's rate and the drain's pace (e2eRate,
// e2eDrainRate) are each one rate chosen from measurements of the accept
// path and the drain taken apart; on 2 cores both left the queue growing
// for the whole run. The search asks the stack itself: short trial runs
// (BENCH_E2E_SEARCH_DURATION) between a low and a high bound taken from
// the mode's own figures, each judged by e2eCriterion, narrowed by
// bisection (nextSearchRate) for at most BENCH_E2E_SEARCH_TRIALS trials;
// then one run at the rate found, as long as the others
// (BENCH_E2E_DURATION). Information beside issue 14's targets, with no
// target of its own.

// e2eCriterion is the rule by which one phase 4 run is judged to have
// kept its queue bounded: what "the stack keeps up" means in figures.
//
// A queue that keeps up holds, at any moment, the messages of the last
// moments of arrivals: with a drain as fast as the arrivals it neither
// grows nor holds much more than the time one message takes through the
// relay, a claim and an SMTP exchange. One that falls behind grows for as
// long as the load lasts, and its accepted → sent latency is then the
// run's length, not a latency. So, over the last TailShare of the load
// (the first part holds the warm-up: pools filling, the first claims):
//
//   - waiting (queued + sending + failed, the api's carteiro_queue_depth,
//     polled while the load runs) never exceeds MaxWaitingS seconds of
//     arrivals (rate × MaxWaitingS): by Little's law a mean time in the
//     queue of at most that long. A second is twice the p99 issue 14 asks
//     at its rate, room for the claims' batches and the polls' own timing;
//     a queue that falls behind by a tenth at 1,000/s passes it within
//     ten seconds;
//   - it does not grow: the least-squares slope of waiting over time,
//     times the part's length, is at most MaxGrowthS seconds of arrivals
//     (half the first limit: a queue may not gain more over the judged
//     part than half what it may hold). The budget is per run, not per
//     second, so a run of any length is held to the same rule: over the 5
//     s judged of a 10 s trial a drain at 90 % of the arrivals' pace
//     passes it, over the 30 s of a 60 s run only one at 98.3 % or more. A
//     short trial cannot resolve a smaller deficit than its own from the
//     queue's noise, so a longer run at the rate a search of short trials
//     found can fail where the trials passed: the figure then says the
//     sustained rate lies a little lower;
//   - at least MinTailSamples polls fall in that part (fewer judge nothing);
//
// and for the run as a whole:
//
//   - every accepted message is sent within MaxSentAfterLoadS of the
//     load's end (from the end of the load to the last row's sent_at):
//     what was waiting at the end, at most a second of arrivals, drains
//     at least as fast as it arrived, plus the relay's and a claim's
//     delays (a stuck or retried message fails it);
//   - at most MaxLateShare of the requests started late (phase 4's
//     in-flight cap reached: the api itself did not keep up, so the rate
//     was not offered);
//   - no request failed.
type e2eCriterion struct {
	TailShare         float64 `json:"tail_share"`
	MaxWaitingS       float64 `json:"max_waiting_s_of_arrivals"`
	MaxGrowthS        float64 `json:"max_growth_s_of_arrivals"`
	MinTailSamples    int     `json:"min_tail_samples"`
	MaxSentAfterLoadS float64 `json:"max_sent_after_load_s"`
	MaxLateShare      float64 `json:"max_late_share"`
}

// boundedCriterion is the criterion phase 4's search applies (see
// e2eCriterion for why each figure).
func boundedCriterion() e2eCriterion {
	return e2eCriterion{TailShare: 0.5, MaxWaitingS: 1, MaxGrowthS: 0.5, MinTailSamples: 3,
		MaxSentAfterLoadS: 2, MaxLateShare: 0.01}
}

// depthSample is one poll of the queue's depth: AtS seconds after the
// load's start, Waiting messages queued, sending or failed.
type depthSample struct {
	AtS     float64 `json:"at_s"`
	Waiting float64 `json:"waiting"`
}

// e2eObservation is what the criterion reads of one run.
type e2eObservation struct {
	Rate      float64 // offered, requests/s
	DurationS float64 // the load's scheduled length
	Requests  int64
	Late      int64
	Errors    int64
	Accepted  int64
	// Waiting are the polls of the queue's depth, in order.
	Waiting []depthSample
	// SentAfterLoadS is the last row's sent_at less the load's end.
	SentAfterLoadS float64
}

// observe is what the criterion reads of a finished run.
func (r e2eRun) observe() e2eObservation {
	return e2eObservation{Rate: r.TargetRate, DurationS: r.DurationS, Requests: r.Requests, Late: r.Late,
		Errors: r.Errors(), Accepted: r.Accepted, Waiting: r.waiting, SentAfterLoadS: r.sentAfterLoadS}
}

// e2eJudgement is the criterion applied to one run: Bounded, or Failed
// naming each condition not met with its figures; then the figures
// themselves and the limits at the run's rate.
type e2eJudgement struct {
	Bounded bool     `json:"bounded"`
	Failed  []string `json:"failed,omitempty"`
	// TailFromS is where the judged part of the load starts (seconds
	// after its start); TailSamples the polls in it.
	TailFromS      float64 `json:"tail_from_s"`
	TailSamples    int     `json:"tail_samples"`
	TailMaxWaiting float64 `json:"tail_max_waiting"`
	// TailGrowthPerS is the least-squares slope of waiting over the
	// tail, messages per second.
	TailGrowthPerS float64 `json:"tail_growth_per_s"`
	SentAfterLoadS float64 `json:"sent_after_load_s"`
	// WaitingLimit and GrowthLimitPerS are the criterion's limits at
	// this rate and length: MaxWaitingS of arrivals, and MaxGrowthS of
	// arrivals over the judged part's length.
	WaitingLimit    float64 `json:"waiting_limit"`
	GrowthLimitPerS float64 `json:"growth_limit_per_s"`
}

// judge applies c to one run's observation.
func (c e2eCriterion) judge(o e2eObservation) e2eJudgement {
	j := e2eJudgement{TailFromS: o.DurationS * (1 - c.TailShare), SentAfterLoadS: o.SentAfterLoadS,
		WaitingLimit: o.Rate * c.MaxWaitingS}
	if tail := o.DurationS * c.TailShare; tail > 0 {
		j.GrowthLimitPerS = o.Rate * c.MaxGrowthS / tail
	}
	var tail []depthSample
	for _, s := range o.Waiting {
		if s.AtS >= j.TailFromS && s.AtS <= o.DurationS {
			tail = append(tail, s)
			j.TailMaxWaiting = max(j.TailMaxWaiting, s.Waiting)
		}
	}
	j.TailSamples = len(tail)
	j.TailGrowthPerS = slope(tail)
	fail := func(format string, a ...any) { j.Failed = append(j.Failed, fmt.Sprintf(format, a...)) }
	switch {
	case o.Errors > 0:
		fail("%d request(s) failed", o.Errors)
	case o.Accepted == 0:
		fail("nothing accepted")
	}
	if o.Requests > 0 && float64(o.Late) > c.MaxLateShare*float64(o.Requests) {
		fail("%d of %d requests started late (at most %.0f %%)", o.Late, o.Requests, c.MaxLateShare*100)
	}
	if j.TailSamples < c.MinTailSamples {
		fail("%d depth poll(s) in the last %.0f %% of the load (at least %d)", j.TailSamples, c.TailShare*100, c.MinTailSamples)
	} else {
		if j.TailMaxWaiting > j.WaitingLimit {
			fail("waiting reached %.0f after %.1f s (at most %.0f: %.1f s of arrivals)", j.TailMaxWaiting, j.TailFromS, j.WaitingLimit, c.MaxWaitingS)
		}
		if j.TailGrowthPerS > j.GrowthLimitPerS {
			fail("waiting grew by %.0f/s after %.1f s (at most %.0f/s: %.1f s of arrivals over the %.0f s judged)",
				j.TailGrowthPerS, j.TailFromS, j.GrowthLimitPerS, c.MaxGrowthS, o.DurationS*c.TailShare)
		}
	}
	if o.SentAfterLoadS > c.MaxSentAfterLoadS {
		fail("the last message sent %.1f s after the load ended (at most %.1f s)", o.SentAfterLoadS, c.MaxSentAfterLoadS)
	}
	j.Bounded = len(j.Failed) == 0
	return j
}

// judgeRun applies c to run e, which err broke when not nil: a broken
// run is not bounded whatever its figures, and says so.
func (c e2eCriterion) judgeRun(e e2eRun, err error) e2eJudgement {
	j := c.judge(e.observe())
	if err != nil {
		j.Bounded = false
		j.Failed = append(j.Failed, "the run broke: "+err.Error())
	}
	return j
}

// slope is the least-squares slope of Waiting over AtS (0 for fewer than
// two samples or no spread in time).
func slope(s []depthSample) float64 {
	if len(s) < 2 {
		return 0
	}
	var mt, mw float64
	for _, x := range s {
		mt += x.AtS
		mw += x.Waiting
	}
	mt /= float64(len(s))
	mw /= float64(len(s))
	var num, den float64
	for _, x := range s {
		num += (x.AtS - mt) * (x.Waiting - mw)
		den += (x.AtS - mt) * (x.AtS - mt)
	}
	if den == 0 {
		return 0
	}
	return num / den
}

// e2eSearchPrecision ends the search once the high bound is within this
// share above the low one: 10 %, finer than what two runs of the same
// rate agree to on a shared machine.
const e2eSearchPrecision = 0.1

// e2eSearchLowShare is the low bound's share of the capacity estimate
// (e2eDrainRate.Capacity) when no phase 4 run was bounded: at a quarter
// of it, accepting and delivering use a quarter of the cores between
// them by that estimate, well below the 0.8 × that left the queue
// growing in the full run of c259f95.
const e2eSearchLowShare = 0.25

// e2eSearchMinRate is the lowest rate the search offers, requests/s.
const e2eSearchMinRate = 1.0

// e2eSearchState is the bracket the search narrows: Hi was judged (or is
// taken as) not bounded, Lo is below it, LoBounded when a run at Lo was
// judged bounded.
type e2eSearchState struct {
	Lo        float64 `json:"low_per_s"`
	Hi        float64 `json:"high_per_s"`
	LoBounded bool    `json:"low_judged_bounded"`
}

// nextSearchRate is the rate of the next trial, or done with why the
// search ends: the geometric mean of the bounds (each trial halves their
// ratio) until Hi is within e2eSearchPrecision of Lo; but Lo itself while
// no run at it was judged bounded and Hi is within twice Lo (the bracket
// narrowed down to an unproven low bound, or moved below one that was
// not bounded: after), so that a stack slower than the low bound is
// found by halving; never below e2eSearchMinRate.
func nextSearchRate(st e2eSearchState) (rate float64, done bool, why string) {
	converged := st.Hi <= st.Lo*(1+e2eSearchPrecision)
	if converged && st.LoBounded {
		return 0, true, fmt.Sprintf("converged: %.0f/s bounded, %.0f/s not (within %.0f %%)", st.Lo, st.Hi, e2eSearchPrecision*100)
	}
	rate = math.Sqrt(st.Lo * st.Hi)
	if !st.LoBounded && st.Hi <= 2*st.Lo {
		rate = st.Lo
	}
	if rate < e2eSearchMinRate {
		return 0, true, fmt.Sprintf("the next rate %.2f/s is below %.0f request/s", rate, e2eSearchMinRate)
	}
	return rate, false, ""
}

// after is the bracket once a trial at rate was judged: a bounded rate
// becomes the low bound, an unbounded one the high bound; an unbounded
// trial at or below the low bound halves it (the bracket moves down).
func (st e2eSearchState) after(rate float64, bounded bool) e2eSearchState {
	switch {
	case bounded && rate >= st.Lo:
		st.Lo, st.LoBounded = rate, true
		st.Hi = max(st.Hi, rate)
	case bounded:
		// Below a low bound already judged bounded: nothing new.
	case rate <= st.Lo:
		st.Hi, st.Lo, st.LoBounded = rate, rate/2, false
	default:
		st.Hi = min(st.Hi, rate)
	}
	return st
}

// e2eJudged is one of phase 4's runs judged by the criterion: where the
// search's bounds come from.
type e2eJudged struct {
	Run       string       `json:"run"`
	Rate      float64      `json:"rate_per_s"`
	Judgement e2eJudgement `json:"judgement"`
}

// searchStart is the search's first bracket from the mode's own figures:
// the high bound the lowest rate of phase 4's runs judged not bounded
// (else maxAccept, phase 2's highest median json+key accept rate, which
// no load of both can exceed); the low bound the highest rate below it of
// those judged bounded (else e2eSearchLowShare × capacity, the estimate of
// e2eDrainRate, else a quarter of the high bound). lowFrom and highFrom
// say where each came from; skip is why no search can run ("" when one
// can).
func searchStart(judged []e2eJudged, capacity, maxAccept float64) (st e2eSearchState, lowFrom, highFrom, skip string) {
	for _, j := range judged {
		if !j.Judgement.Bounded && j.Rate > 0 && (st.Hi == 0 || j.Rate < st.Hi) {
			st.Hi, highFrom = j.Rate, j.Run+" (not bounded)"
		}
	}
	if st.Hi == 0 {
		st.Hi, highFrom = maxAccept, "phase 2's highest median json+key accept rate"
	}
	if st.Hi < 2*e2eSearchMinRate {
		return st, "", highFrom, fmt.Sprintf("no high bound of at least %.0f requests/s (phase 4's runs and phase 2's accept rate)", 2*e2eSearchMinRate)
	}
	for _, j := range judged {
		if j.Judgement.Bounded && j.Rate < st.Hi && j.Rate > st.Lo {
			st.Lo, st.LoBounded, lowFrom = j.Rate, true, j.Run+" (bounded)"
		}
	}
	if st.Lo == 0 {
		st.Lo, lowFrom = e2eSearchLowShare*capacity, fmt.Sprintf("%.2f × the capacity estimate %.0f msg/s", e2eSearchLowShare, capacity)
		if st.Lo <= 0 || st.Lo >= st.Hi {
			st.Lo, lowFrom = st.Hi/4, "a quarter of the high bound"
		}
	}
	return st, lowFrom, highFrom, ""
}

// e2eTrial is one short run of the search.
type e2eTrial struct {
	Rate             float64      `json:"rate_per_s"`
	DurationS        float64      `json:"duration_s"`
	AchievedRate     float64      `json:"achieved_rps"`
	Late             int64        `json:"late_starts"`
	Errors           int64        `json:"errors"`
	AcceptedToSentMs latencyMs    `json:"accepted_to_sent_ms"`
	MaxWaiting       float64      `json:"max_waiting"`
	Judgement        e2eJudgement `json:"judgement"`
	// Waiting are the trial's depth polls (seconds after the load's
	// start, waiting), what the judgement read.
	Waiting []depthSample `json:"waiting"`
	// Error is what broke in the trial ("" when nothing did).
	Error string `json:"error,omitempty"`
}

// e2eSearch is phase 4's search: the criterion, the first bracket and
// where it came from, each trial, and the rate found. Rate is the final
// low bound; Verified says a run at it was judged bounded (a trial or one
// of phase 4's runs); when not, no trial within MaxTrials was, and the
// confirmation run at Rate says whether it is.
type e2eSearch struct {
	Criterion      e2eCriterion   `json:"criterion"`
	Precision      float64        `json:"precision"`
	MaxTrials      int            `json:"max_trials"`
	TrialDurationS float64        `json:"trial_duration_s"`
	Judged         []e2eJudged    `json:"judged_runs"`
	Start          e2eSearchState `json:"start"`
	LowFrom        string         `json:"low_from"`
	HighFrom       string         `json:"high_from"`
	Trials         []e2eTrial     `json:"trials"`
	End            e2eSearchState `json:"end"`
	Stopped        string         `json:"stopped"`
	Rate           float64        `json:"found_rate_per_s"`
	Verified       bool           `json:"found_rate_judged_bounded"`
}

// e2eSearchChoice is how the confirmation run's rate was found (in its
// e2eRun), with the criterion applied to the run itself.
type e2eSearchChoice struct {
	Rate      float64 `json:"rate_per_s"`
	Trials    int     `json:"trials"`
	StartLow  float64 `json:"start_low_per_s"`
	StartHigh float64 `json:"start_high_per_s"`
	// Verified: a trial (or one of phase 4's runs) at Rate was judged
	// bounded.
	Verified  bool         `json:"found_rate_judged_bounded"`
	Judgement e2eJudgement `json:"judgement"`
	// Waiting are the run's depth polls (seconds after the load's
	// start, waiting), what the judgement read.
	Waiting []depthSample `json:"waiting"`
}

// trialsText lists the trials as "640 yes, 812 no".
func (s *e2eSearch) trialsText() string {
	if len(s.Trials) == 0 {
		return "none"
	}
	v := make([]string, len(s.Trials))
	for i, t := range s.Trials {
		v[i] = fmt.Sprintf("%.0f %s", t.Rate, map[bool]string{true: "yes", false: "no"}[t.Judgement.Bounded])
	}
	return strings.Join(v, ", ")
}

// e2eSearchPoll is how often the search's runs poll the queue's depth: a
// 10 s trial's last half then holds about ten polls (phase 4's other runs
// keep polling every second).
const e2eSearchPoll = 500 * time.Millisecond

// judgedRuns are phase 4's runs at issue 14's rate and at the drain's
// pace, each judged by c (a run that sent nothing is left out).
func judgedRuns(c e2eCriterion, m *modeResult) []e2eJudged {
	var out []e2eJudged
	for _, r := range []struct {
		name string
		run  *e2eRun
	}{{"issue 14's rate", m.E2E}, {"the drain's pace", m.E2ESustained}} {
		if r.run != nil && r.run.Sent > 0 {
			out = append(out, e2eJudged{Run: r.name, Rate: r.run.TargetRate, Judgement: c.judge(r.run.observe())})
		}
	}
	return out
}

// searchE2E runs phase 4's search and its confirmation run in mode (see
// the top of this file), recording them in m (E2ESearch and E2EBounded, or
// E2ESearchSkipped); capacity and maxAccept are the figures the drain's
// pace was chosen from. What breaks in a run is noted and the search goes
// on; a failed settle ends it. It returns an error only when ctx ends.
func (b *bench) searchE2E(ctx context.Context, st *stack, db *benchDB, mp *mailpit, mode string, m *modeResult,
	capacity, maxAccept float64, settle func(string) error, note func(string, error)) error {
	s := b.s
	if s.E2ESearchTrials == 0 {
		m.E2ESearchSkipped = "BENCH_E2E_SEARCH_TRIALS=0"
		b.log.printf("[%s] end to end search: skipped: %s", mode, m.E2ESearchSkipped)
		return nil
	}
	c := boundedCriterion()
	sr := &e2eSearch{Criterion: c, Precision: e2eSearchPrecision, MaxTrials: s.E2ESearchTrials,
		TrialDurationS: s.E2ESearchDuration.D().Seconds(), Judged: judgedRuns(c, m), Trials: []e2eTrial{}}
	for _, j := range sr.Judged {
		b.log.printf("[%s] end to end search: %s (%.0f req/s) bounded: %v %s", mode, j.Run, j.Rate, j.Judgement.Bounded, strings.Join(j.Judgement.Failed, "; "))
	}
	var skip string
	sr.Start, sr.LowFrom, sr.HighFrom, skip = searchStart(sr.Judged, capacity, maxAccept)
	if skip != "" {
		m.E2ESearchSkipped = skip
		b.log.printf("[%s] end to end search: skipped: %s", mode, skip)
		return nil
	}
	m.E2ESearch = sr
	b.log.printf("[%s] end to end search between %.0f (%s) and %.0f req/s (%s), at most %d trials of %s",
		mode, sr.Start.Lo, sr.LowFrom, sr.Start.Hi, sr.HighFrom, s.E2ESearchTrials, s.E2ESearchDuration)
	state := sr.Start
	for i := 1; ; i++ {
		rate, done, why := nextSearchRate(state)
		if !done && i > s.E2ESearchTrials {
			done, why = true, fmt.Sprintf("%d trials run (BENCH_E2E_SEARCH_TRIALS)", s.E2ESearchTrials)
		}
		if done {
			sr.Stopped = why
			break
		}
		what := fmt.Sprintf("end to end search trial %d", i)
		if err := settle(what); err != nil {
			note(what, err)
			sr.Stopped = "the settle before trial " + strconv.Itoa(i) + " failed"
			break
		}
		e, err := runE2E(ctx, st, db, mp, runPrefix("e2e-search", mode, i), rate, s.E2ESearchDuration.D(), s.E2EMaxInFlight, e2eSearchPoll)
		t := e2eTrial{Rate: rate, DurationS: e.DurationS, AchievedRate: e.AchievedRate, Late: e.Late, Errors: e.Errors(),
			AcceptedToSentMs: e.AcceptedToSentMs, MaxWaiting: e.MaxDepth["waiting"], Judgement: c.judgeRun(e, err), Waiting: e.waiting}
		if err != nil {
			t.Error = err.Error()
			note(what, err)
		}
		sr.Trials = append(sr.Trials, t)
		state = state.after(rate, t.Judgement.Bounded)
		b.log.printf("[%s] end to end search trial %d at %.0f req/s: accepted→sent p50 %.0f  p99 %.0f ms  max waiting %.0f  bounded %v %s; now %.0f..%.0f",
			mode, i, rate, t.AcceptedToSentMs.P50, t.AcceptedToSentMs.P99, t.MaxWaiting, t.Judgement.Bounded, strings.Join(t.Judgement.Failed, "; "), state.Lo, state.Hi)
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	sr.End, sr.Rate, sr.Verified = state, state.Lo, state.LoBounded
	b.log.printf("[%s] end to end search stopped (%s): %.0f req/s (judged bounded: %v)", mode, sr.Stopped, sr.Rate, sr.Verified)

	const what = "end to end at the rate found"
	if err := settle(what); err != nil {
		note(what, err)
		return nil
	}
	e, err := runE2E(ctx, st, db, mp, runPrefix("e2e-bounded", mode, 1), sr.Rate, s.E2EDuration.D(), s.E2EMaxInFlight, e2eSearchPoll)
	e.SearchChoice = &e2eSearchChoice{Rate: sr.Rate, Trials: len(sr.Trials), StartLow: sr.Start.Lo, StartHigh: sr.Start.Hi,
		Verified: sr.Verified, Judgement: c.judgeRun(e, err), Waiting: e.waiting}
	m.E2EBounded = &e
	note(what, err)
	b.logE2E(mode, "rate found", e)
	b.log.printf("[%s] rate found: bounded by the criterion: %v %s", mode, e.SearchChoice.Judgement.Bounded, strings.Join(e.SearchChoice.Judgement.Failed, "; "))
	return ctx.Err()
}
