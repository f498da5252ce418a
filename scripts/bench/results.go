package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// results is everything one `make bench` measured: bench/results.json.
type results struct {
	Date        string `json:"date"`
	GitRevision string `json:"git_revision"`
	Command     string `json:"command"`
	// Environment holds the variables set for this run that change what
	// is measured (BENCH_*, and the stack's own knobs passed through).
	Environment map[string]string `json:"environment"`
	Settings    settings          `json:"settings"`
	Machine     machine           `json:"machine"`
	Versions    map[string]string `json:"versions"`
	Postgres    map[string]string `json:"postgres"`
	// Binaries are the api, worker, mailpit (and jaeger) the run used.
	Binaries map[string]binary `json:"binaries"`
	Method   map[string]string `json:"method"`
	Modes    []*modeResult     `json:"modes"`
	// Comparison holds the observability on/off ratios (on ÷ off).
	Comparison map[string]float64 `json:"comparison,omitempty"`
	// Targets are issue 14's targets beside their figures (targets.go).
	Targets []target `json:"targets"`
	OK      bool     `json:"ok"`
	Errors  []string `json:"errors"`
	RunDir  string   `json:"run_dir,omitempty"`
}

// modeResult is one observability mode's figures.
type modeResult struct {
	Observability string `json:"observability"`

	Ceiling          []pgbenchRun `json:"phase1_pgbench"`
	CeilingMedianTPS float64      `json:"phase1_median_tps"`

	// HTTPCeiling is nginx → a no-op Go handler, wrk at the first
	// connection count (16), one run per round.
	HTTPCeiling          []acceptRun `json:"phase2_http_ceiling"`
	HTTPCeilingMedianRPS float64     `json:"phase2_http_ceiling_median_rps"`

	Warmup *acceptRun   `json:"phase2_warmup,omitempty"`
	Accept []*acceptSet `json:"phase2_accept"`

	SMTPCeiling       []smtpRun     `json:"phase3_smtp_ceiling"`
	Delivery          []deliveryRun `json:"phase3_delivery"`
	SMTPMedianRate    float64       `json:"phase3_smtp_ceiling_median_per_s"`
	DeliveryMedian    float64       `json:"phase3_delivery_median_per_s"`
	DeliveryRatio     float64       `json:"phase3_ratio_delivery_to_ceiling"`
	DeliveryRoundRate []float64     `json:"phase3_round_ratios"`
	// SMTPSource is the public SMTP ceiling (Postfix's smtp-source, -d -s
	// WORKER_CONCURRENCY), one run per round; the ratios are the drain's
	// over it.
	SMTPSource              []smtpRun `json:"phase3_smtp_source"`
	SMTPSourceMedianRate    float64   `json:"phase3_smtp_source_median_per_s"`
	DeliveryRatioSource     float64   `json:"phase3_ratio_delivery_to_smtp_source"`
	DeliveryRoundRateSource []float64 `json:"phase3_round_ratios_smtp_source"`
	// SMTPSourceWorker is smtp-source sending a message the worker sent,
	// one run after each drain (BENCH_SMTP_SOURCE_WORKER_MESSAGE;
	// workermessage.go), and the drain's ratios over it: information, the
	// target's ratio is DeliveryRatioSource's.
	SMTPSourceWorker              []smtpRun `json:"phase3_smtp_source_worker_message,omitempty"`
	SMTPSourceWorkerMedianRate    float64   `json:"phase3_smtp_source_worker_message_median_per_s,omitempty"`
	DeliveryRatioSourceWorker     float64   `json:"phase3_ratio_delivery_to_smtp_source_worker_message,omitempty"`
	DeliveryRoundRateSourceWorker []float64 `json:"phase3_round_ratios_smtp_source_worker_message,omitempty"`

	// E2E is phase 4 at issue 14's rate; E2ESustained the same load
	// afterwards at the drain's pace (0.8 × the capacity to accept and
	// deliver at once: e2eDrainRate; information),
	// or E2ESustainedSkipped why it did not run.
	E2E                 *e2eRun `json:"phase4_end_to_end,omitempty"`
	E2ESustained        *e2eRun `json:"phase4_end_to_end_sustained,omitempty"`
	E2ESustainedSkipped string  `json:"phase4_end_to_end_sustained_skipped,omitempty"`
	// E2ESearch is the search for the highest rate at which the queue
	// stays bounded (e2esearch.go), E2EBounded the run at the rate it
	// found, or E2ESearchSkipped why there was no search (information).
	E2ESearch        *e2eSearch `json:"phase4_end_to_end_search,omitempty"`
	E2EBounded       *e2eRun    `json:"phase4_end_to_end_bounded,omitempty"`
	E2ESearchSkipped string     `json:"phase4_end_to_end_search_skipped,omitempty"`

	RSS []rssSample `json:"phase5_rss"`
	// RSSSampled is every api and worker process sampled every second
	// throughout the mode.
	RSSSampled *rssSampled `json:"phase5_rss_sampled,omitempty"`

	// ObsCheck (observability on): what Jaeger and Prometheus received.
	ObsCheck *obsCheck `json:"observability_check,omitempty"`

	Settles []settleRecord `json:"settles"`
	Errors  []string       `json:"errors"`
}

// acceptSet is phase 2 for one variant at one connection count.
type acceptSet struct {
	// Variant: json, json+key, form or form+key (acceptVariant).
	Variant     string      `json:"variant"`
	Connections int         `json:"connections"`
	Runs        []acceptRun `json:"runs"`
	MedianRPS   float64     `json:"median_rps"`
	// Median of each run's percentile (ms).
	MedianP50 float64 `json:"median_p50_ms"`
	MedianP99 float64 `json:"median_p99_ms"`
	MedianMax float64 `json:"median_max_ms"`
	Errors    int64   `json:"errors"`
	// Ratio is MedianRPS over phase 1's median tps; RoundRatios each run
	// over the pgbench run of its round.
	Ratio       float64   `json:"ratio_to_pgbench"`
	RoundRatios []float64 `json:"round_ratios"`
	// RatioHTTP is MedianRPS over the no-op HTTP ceiling's median;
	// RoundRatiosHTTP each run over the no-op run of its round.
	RatioHTTP       float64   `json:"ratio_to_http_ceiling"`
	RoundRatiosHTTP []float64 `json:"round_ratios_http_ceiling"`
	// MedianCPUUsPerRequest is, per component of cpu_us_per_request (and
	// its total), the median over the runs that have it.
	MedianCPUUsPerRequest map[string]float64 `json:"median_cpu_us_per_request,omitempty"`
}

// name is the set's label: "json+key c16".
func (a *acceptSet) name() string { return fmt.Sprintf("%s c%d", a.Variant, a.Connections) }

type settleRecord struct {
	Before  string  `json:"before"`
	WaitedS float64 `json:"waited_s"`
}

// accept returns the set of variant at conns, made on first use.
func (m *modeResult) accept(variant string, conns int) *acceptSet {
	if a := m.findAccept(variant, conns); a != nil {
		return a
	}
	a := &acceptSet{Variant: variant, Connections: conns}
	m.Accept = append(m.Accept, a)
	return a
}

func (m *modeResult) findAccept(variant string, conns int) *acceptSet {
	for _, a := range m.Accept {
		if a.Variant == variant && a.Connections == conns {
			return a
		}
	}
	return nil
}

// finish computes the medians and ratios from the runs.
func (m *modeResult) finish() {
	m.CeilingMedianTPS = median(pluck(m.Ceiling, func(r pgbenchRun) float64 { return r.TPS }))
	m.HTTPCeilingMedianRPS = median(pluck(m.HTTPCeiling, func(r acceptRun) float64 { return r.RPS }))
	for _, a := range m.Accept {
		a.MedianRPS = median(pluck(a.Runs, func(r acceptRun) float64 { return r.RPS }))
		a.MedianP50 = median(pluck(a.Runs, func(r acceptRun) float64 { return r.LatencyMs.P50 }))
		a.MedianP99 = median(pluck(a.Runs, func(r acceptRun) float64 { return r.LatencyMs.P99 }))
		a.MedianMax = median(pluck(a.Runs, func(r acceptRun) float64 { return r.LatencyMs.Max }))
		a.Errors = 0
		for _, r := range a.Runs {
			a.Errors += r.Errors()
		}
		a.RoundRatios = roundRatios(a.Runs, m.Ceiling, acceptRun.roundRate, pgbenchRun.roundRate)
		a.RoundRatiosHTTP = roundRatios(a.Runs, m.HTTPCeiling, acceptRun.roundRate, acceptRun.roundRate)
		a.Ratio = ratio(a.MedianRPS, m.CeilingMedianTPS)
		a.RatioHTTP = ratio(a.MedianRPS, m.HTTPCeilingMedianRPS)
		a.MedianCPUUsPerRequest = medianCPUPerRequest(a.Runs)
	}
	m.SMTPMedianRate = median(pluck(m.SMTPCeiling, func(r smtpRun) float64 { return r.Rate }))
	m.DeliveryMedian = median(pluck(m.Delivery, func(r deliveryRun) float64 { return r.Rate }))
	m.DeliveryRatio = ratio(m.DeliveryMedian, m.SMTPMedianRate)
	m.DeliveryRoundRate = ratioByRound(m.Delivery, m.SMTPCeiling)
	m.SMTPSourceMedianRate = median(pluck(m.SMTPSource, func(r smtpRun) float64 { return r.Rate }))
	m.DeliveryRatioSource = ratio(m.DeliveryMedian, m.SMTPSourceMedianRate)
	m.DeliveryRoundRateSource = ratioByRound(m.Delivery, m.SMTPSource)
	m.SMTPSourceWorkerMedianRate = median(pluck(m.SMTPSourceWorker, func(r smtpRun) float64 { return r.Rate }))
	m.DeliveryRatioSourceWorker = ratio(m.DeliveryMedian, m.SMTPSourceWorkerMedianRate)
	m.DeliveryRoundRateSourceWorker = ratioByRound(m.Delivery, m.SMTPSourceWorker)
}

// medianCPUPerRequest is, per key of the runs' cpu_us_per_request, the
// median over the runs that have it; nil when none has any.
func medianCPUPerRequest(runs []acceptRun) map[string]float64 {
	by := map[string][]float64{}
	for _, r := range runs {
		for k, v := range r.CPUUsPerRequest {
			by[k] = append(by[k], v)
		}
	}
	if len(by) == 0 {
		return nil
	}
	out := map[string]float64{}
	for k, vs := range by {
		out[k] = median(vs)
	}
	return out
}

// ratioByRound divides each drain's rate by the ceiling measured in its
// own round (a round without a ceiling is left out), in the drains' order.
func ratioByRound(drains []deliveryRun, ceilings []smtpRun) []float64 {
	return roundRatios(drains, ceilings, deliveryRun.roundRate, smtpRun.roundRate)
}

// roundRatios divides each run's rate by the rate of the ceiling measured
// in its own round (a round without a ceiling is left out), in the runs'
// order; runOf and ceilingOf give a round and a rate.
func roundRatios[R, C any](runs []R, ceilings []C, runOf func(R) (int, float64), ceilingOf func(C) (int, float64)) []float64 {
	ceiling := map[int]float64{}
	for _, c := range ceilings {
		round, rate := ceilingOf(c)
		ceiling[round] = rate
	}
	var out []float64
	for _, r := range runs {
		round, rate := runOf(r)
		if c := ceiling[round]; c > 0 {
			out = append(out, rate/c)
		}
	}
	return out
}

func (r acceptRun) roundRate() (int, float64)   { return r.Round, r.RPS }
func (r pgbenchRun) roundRate() (int, float64)  { return r.Round, r.TPS }
func (r deliveryRun) roundRate() (int, float64) { return r.Round, r.Rate }
func (r smtpRun) roundRate() (int, float64)     { return r.Round, r.Rate }

// compare fills res.Comparison from the off and on modes.
func (res *results) compare() {
	var off, on *modeResult
	for _, m := range res.Modes {
		switch m.Observability {
		case "off":
			off = m
		case "on":
			on = m
		}
	}
	if off == nil || on == nil {
		return
	}
	res.Comparison = map[string]float64{}
	for _, a := range off.Accept {
		b := on.findAccept(a.Variant, a.Connections)
		if b == nil {
			continue
		}
		r := ratio(b.MedianRPS, a.MedianRPS)
		res.Comparison[comparisonKey(a.Variant, a.Connections)] = r
		if a.Variant == acceptVariants[0] {
			// The key of the time before variants: JSON without a key.
			res.Comparison["accept"+strconv.Itoa(a.Connections)+"_rps_on_over_off"] = r
		}
	}
	res.Comparison["pgbench_tps_on_over_off"] = ratio(on.CeilingMedianTPS, off.CeilingMedianTPS)
	res.Comparison["delivery_rate_on_over_off"] = ratio(on.DeliveryMedian, off.DeliveryMedian)
	if off.E2E != nil && on.E2E != nil {
		res.Comparison["e2e_p99_on_over_off"] = ratio(on.E2E.AcceptedToSentMs.P99, off.E2E.AcceptedToSentMs.P99)
	}
	if off.E2ESustained != nil && on.E2ESustained != nil {
		res.Comparison["e2e_sustained_p99_on_over_off"] = ratio(on.E2ESustained.AcceptedToSentMs.P99, off.E2ESustained.AcceptedToSentMs.P99)
	}
	if off.E2EBounded != nil && on.E2EBounded != nil {
		res.Comparison["e2e_bounded_rate_on_over_off"] = ratio(on.E2EBounded.TargetRate, off.E2EBounded.TargetRate)
		res.Comparison["e2e_bounded_p99_on_over_off"] = ratio(on.E2EBounded.AcceptedToSentMs.P99, off.E2EBounded.AcceptedToSentMs.P99)
	}
}

// comparisonKey is the Comparison key of one accept set's on ÷ off ratio:
// "accept_json+key_c16_rps_on_over_off".
func comparisonKey(variant string, conns int) string {
	return fmt.Sprintf("accept_%s_c%d_rps_on_over_off", variant, conns)
}

func (res *results) write(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
