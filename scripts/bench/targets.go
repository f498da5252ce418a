package main

import (
	"fmt"
	"math"
)

// The targets of issue 14, each beside the figure measured for it: met,
// not met, or not measured (this run has no figure for it, e.g. one round
// or one observability mode). Figures, never the exit status. Beside them,
// phase 4's run at the drain's pace, for information: issue 14 sets no
// target at that rate, so none is invented for it.

// The targets' thresholds.
const (
	targetAcceptOverPgbench = 1.0  // accept requests/s ÷ pgbench tps, observability off
	targetAcceptP99Ms       = 50.0 // accept p99 at the first connection count (16)
	targetObsOnOverOff      = 0.85 // accept with observability on ÷ off: at most 15 % less
	targetDrainOverSource   = 0.8  // drain ÷ smtp-source
	targetDrainFlat         = 0.10 // third drain round within 10 % of the first ...
	targetDrainFlatRows     = 100_000
	targetE2EP99Ms          = 500.0 // accepted → sent p99 at phase 4's rate
	targetRSSMiB            = 64.0  // api and worker, throughout
)

// Target statuses.
const (
	statusMet         = "met"
	statusNotMet      = "not met"
	statusNotMeasured = "not measured"
	// statusInformation marks a figure shown beside the targets that
	// has no target of its own (phase 4 at the drain's pace).
	statusInformation = "information"
)

// target is one target for one subject (a variant, a process) in one
// observability mode.
type target struct {
	Target        string  `json:"target"`
	Subject       string  `json:"subject,omitempty"`
	Observability string  `json:"observability"`
	Want          string  `json:"want"`
	Measured      float64 `json:"measured"`
	// MeasuredText is the figure as printed, with what it is made of.
	MeasuredText string `json:"measured_text"`
	Status       string `json:"status"`
}

// evaluateTargets computes every target from res's modes and comparison.
func evaluateTargets(res *results) []target {
	var out []target
	add := func(name, subject, mode, want string, measured float64, text string, met, measuredOK bool) {
		t := target{Target: name, Subject: subject, Observability: mode, Want: want, Measured: measured, MeasuredText: text}
		switch {
		case !measuredOK:
			t.Status = statusNotMeasured
		case met:
			t.Status = statusMet
		default:
			t.Status = statusNotMet
		}
		out = append(out, t)
	}
	modes := map[string]*modeResult{}
	for _, m := range res.Modes {
		modes[m.Observability] = m
	}
	first := 16
	if len(res.Settings.Conns) > 0 {
		first = res.Settings.Conns[0]
	}
	var firstSets []acceptPlan
	for _, p := range res.Settings.AcceptRuns {
		if p.Connections == first {
			firstSets = append(firstSets, p)
		}
	}

	// Accept throughput and latency: observability off, each variant at 16.
	off := modes["off"]
	for _, p := range firstSets {
		name := fmt.Sprintf("%s c%d", p.Variant, p.Connections)
		var a *acceptSet
		if off != nil {
			a = off.findAccept(p.Variant, p.Connections)
		}
		ok := a != nil && len(a.Runs) > 0 && off.CeilingMedianTPS > 0
		var r, p99 float64
		var text, p99Text string = "-", "-"
		if ok {
			r, p99 = a.Ratio, a.MedianP99
			text = fmt.Sprintf("%.2f× (%.0f req/s ÷ %.0f tps)", r, a.MedianRPS, off.CeilingMedianTPS)
			p99Text = fmt.Sprintf("%.1f ms", p99)
		}
		add("accept ≥ 1.0× pgbench", name, "off", fmt.Sprintf("≥ %.2f×", targetAcceptOverPgbench), r, text, r >= targetAcceptOverPgbench, ok)
		ok = a != nil && len(a.Runs) > 0
		add(fmt.Sprintf("accept p99 ≤ %.0f ms at %d connections", targetAcceptP99Ms, first), name, "off",
			fmt.Sprintf("≤ %.0f ms", targetAcceptP99Ms), p99, p99Text, p99 <= targetAcceptP99Ms, ok)
	}

	// Observability's cost: each accept set on ÷ off.
	for _, p := range res.Settings.AcceptRuns {
		name := fmt.Sprintf("%s c%d", p.Variant, p.Connections)
		r, ok := res.Comparison[comparisonKey(p.Variant, p.Connections)]
		ok = ok && r > 0
		text := "-"
		if ok {
			text = fmt.Sprintf("%.2f× (%+.0f %%)", r, (r-1)*100)
		}
		add("observability on: accept at most 15 % less", name, "on ÷ off",
			fmt.Sprintf("≥ %.2f×", targetObsOnOverOff), r, text, r >= targetObsOnOverOff, ok)
	}

	for _, m := range res.Modes {
		mode := m.Observability
		// Drain against smtp-source.
		ok := m.DeliveryMedian > 0 && m.SMTPSourceMedianRate > 0
		text := "-"
		if ok {
			text = fmt.Sprintf("%.2f× (%.0f ÷ %.0f msg/s)", m.DeliveryRatioSource, m.DeliveryMedian, m.SMTPSourceMedianRate)
		}
		add("drain ≥ 0.8× smtp-source", "", mode, fmt.Sprintf("≥ %.2f×", targetDrainOverSource),
			m.DeliveryRatioSource, text, m.DeliveryRatioSource >= targetDrainOverSource, ok)

		// Drain flat as the table grows.
		f := drainFlatness(m.Delivery)
		add("drain flat: third round within 10 % of the first, 100k+ rows", "", mode,
			fmt.Sprintf("within ±%.0f %%, ≥ %d rows", targetDrainFlat*100, targetDrainFlatRows),
			f.ratio, f.text, f.met, f.measured)

		// End to end.
		ok = m.E2E != nil && m.E2E.Sent > 0
		var p99 float64
		text = "-"
		if ok {
			p99 = m.E2E.AcceptedToSentMs.P99
			text = fmt.Sprintf("%.0f ms at %.0f req/s", p99, m.E2E.TargetRate)
			if c := m.E2E.RateChoice; c != nil {
				text += " (chosen by " + c.ChosenBy + ")"
			}
		}
		add("accepted → sent p99 ≤ 500 ms", "", mode, fmt.Sprintf("≤ %.0f ms", targetE2EP99Ms), p99, text, p99 <= targetE2EP99Ms, ok)

		// End to end at the drain's pace and at the highest bounded
		// rate: information, no target.
		out = append(out, drainPaceFigure(m), boundedRateFigure(m))

		// Memory.
		for _, kind := range []string{"api", "worker"} {
			peak, ok := m.RSSSampled.peak(kind)
			what := "sampled every second and at the end of each phase, VmHWM included"
			if !ok {
				what = "VmHWM at the end of each phase"
			}
			if p, found := snapshotPeak(m.RSS, kind); found {
				peak, ok = max(peak, p), true
			}
			text := "-"
			if ok {
				text = fmt.Sprintf("%.1f MiB (%s)", peak, what)
			}
			add("RSS ≤ 64 MiB throughout", kind, mode, fmt.Sprintf("≤ %.0f MiB", targetRSSMiB), peak, text, peak <= targetRSSMiB, ok)
		}
	}
	return out
}

// drainPaceFigure is phase 4's run at the drain's pace beside the
// targets (e2eFigure).
func drainPaceFigure(m *modeResult) target {
	return e2eFigure(m, "accepted → sent p99 at the drain's pace (not issue 14's rate)", m.E2ESustained, m.E2ESustainedSkipped,
		func(e *e2eRun) string {
			c := e.DrainRateChoice
			switch {
			case c == nil:
				return ""
			case c.MaxAccept > 0:
				return fmt.Sprintf(" (%.1f × 1 ÷ (1 ÷ accept %.0f + 1 ÷ drain %.0f msg/s) = %.1f × %.0f msg/s)",
					c.Factor, c.MaxAccept, c.DrainMedian, c.Factor, c.Capacity)
			}
			return fmt.Sprintf(" (%.1f × drain %.0f msg/s; no accept rate measured)", c.Factor, c.DrainMedian)
		})
}

// boundedRateFigure is phase 4's run at the highest rate the search found
// bounded beside the targets (e2eFigure), with the trials it took and
// whether the run itself met the criterion.
func boundedRateFigure(m *modeResult) target {
	return e2eFigure(m, "accepted → sent p99 at the highest bounded rate (search; not issue 14's rate)", m.E2EBounded, m.E2ESearchSkipped,
		func(e *e2eRun) string {
			if c := e.SearchChoice; c != nil {
				return fmt.Sprintf(" (%d trials; this run bounded: %s)", c.Trials, judgementText(c.Judgement))
			}
			return ""
		})
}

// e2eFigure is one of phase 4's runs for information beside the targets
// under name: its accepted → sent p99 at its rate and what detail says of
// how the rate was chosen, status information (not measured, with
// skipped's reason, when it did not run), wanting nothing: issue 14 sets
// no target at that rate.
func e2eFigure(m *modeResult, name string, e *e2eRun, skipped string, detail func(e *e2eRun) string) target {
	t := target{Target: name, Observability: m.Observability, Want: "none (information)", MeasuredText: "-", Status: statusNotMeasured}
	switch {
	case e != nil && e.Sent > 0:
		t.Measured, t.Status = e.AcceptedToSentMs.P99, statusInformation
		t.MeasuredText = fmt.Sprintf("%.0f ms at %.0f req/s", t.Measured, e.TargetRate) + detail(e)
	case skipped != "":
		t.MeasuredText = "- (skipped: " + skipped + ")"
	}
	return t
}

// flatness is the drain-flat target's figure.
type flatness struct {
	ratio         float64
	text          string
	met, measured bool
}

// drainFlatness compares the third drain round's rate with the first's,
// with the rows emails held at the third.
func drainFlatness(drains []deliveryRun) flatness {
	var first, third *deliveryRun
	for i := range drains {
		switch drains[i].Round {
		case 1:
			first = &drains[i]
		case 3:
			third = &drains[i]
		}
	}
	if first == nil || third == nil || first.Rate <= 0 {
		return flatness{text: fmt.Sprintf("- (needs rounds 1 and 3; %d drain(s))", len(drains))}
	}
	r := third.Rate / first.Rate
	f := flatness{ratio: r, text: fmt.Sprintf("%.2f× (%.0f ÷ %.0f msg/s) at %d rows", r, third.Rate, first.Rate, third.EmailsRows)}
	if third.EmailsRows < targetDrainFlatRows {
		f.text += fmt.Sprintf(": too few rows (%d wanted)", targetDrainFlatRows)
		return f
	}
	f.measured = true
	f.met = math.Abs(r-1) <= targetDrainFlat+1e-9
	return f
}

// snapshotPeak is the highest VmHWM of kind's instances in the
// end-of-phase snapshots.
func snapshotPeak(samples []rssSample, kind string) (float64, bool) {
	var peak float64
	var ok bool
	for _, s := range samples {
		for name, p := range s.Procs {
			if instanceOf(name, kind) {
				peak, ok = max(peak, p.HWMMiB, p.RSSMiB), true
			}
		}
	}
	return peak, ok
}
