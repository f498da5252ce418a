package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// printTable writes the human summary: one column per observability mode,
// medians first and each run's figure in brackets.
func printTable(w io.Writer, res *results) {
	fmt.Fprintf(w, "\ncarteiro make bench — %s, revision %s\n", res.Date, res.GitRevision)
	fmt.Fprintf(w, "machine: %d cores (%s), %d MiB; load at start %s\n",
		res.Machine.Nproc, res.Machine.CPUModel, res.Machine.MemoryMiB, res.Machine.LoadStart)
	fmt.Fprintf(w, "command: %s\n", res.Command)
	s := res.Settings
	fmt.Fprintf(w, "runs: %s each, %d rounds alternating ceiling and measurement (medians, each run in brackets); phase 3 N=%d; phase 4 %s\n",
		s.Duration, s.Rounds, s.N, s.E2EDuration)
	fmt.Fprintf(w, "phase 2 with the worker %s (BENCH_ACCEPT_WORKER=%s); phase 3 queues by direct INSERT, the relay publishes\n\n",
		map[string]string{"stop": "stopped", "run": "running"}[s.AcceptWorker], s.AcceptWorker)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := []string{"phase", "figure"}
	for _, m := range res.Modes {
		head = append(head, "observability "+m.Observability)
	}
	row := func(cells ...string) { fmt.Fprintln(tw, strings.Join(cells, "\t")) }
	row(head...)
	perMode := func(phase, figure string, f func(m *modeResult) string) {
		cells := []string{phase, figure}
		for _, m := range res.Modes {
			cells = append(cells, f(m))
		}
		row(cells...)
	}

	perMode("1 ceiling", "pgbench INSERT tps", func(m *modeResult) string {
		return withRuns(m.CeilingMedianTPS, pluck(m.Ceiling, func(r pgbenchRun) float64 { return r.TPS }), "%.0f")
	})
	perMode("", fmt.Sprintf("nginx → no-op c%d requests/s", s.Conns[0]), func(m *modeResult) string {
		return withRuns(m.HTTPCeilingMedianRPS, pluck(m.HTTPCeiling, func(r acceptRun) float64 { return r.RPS }), "%.0f")
	})
	for i, p := range s.AcceptRuns {
		set := func(f func(a *acceptSet) string) func(m *modeResult) string {
			return func(m *modeResult) string {
				a := m.findAccept(p.Variant, p.Connections)
				if a == nil || len(a.Runs) == 0 {
					return "-"
				}
				return f(a)
			}
		}
		name := fmt.Sprintf("%s c%d", p.Variant, p.Connections)
		perMode(map[bool]string{true: "2 accept"}[i == 0], name+" requests/s", set(func(a *acceptSet) string {
			return withRuns(a.MedianRPS, pluck(a.Runs, func(r acceptRun) float64 { return r.RPS }), "%.0f")
		}))
		perMode("", name+" p50 / p99 / max ms, errors", set(func(a *acceptSet) string {
			return fmt.Sprintf("%.1f / %.1f / %.0f, %d", a.MedianP50, a.MedianP99, a.MedianMax, a.Errors)
		}))
		perMode("", name+" ÷ pgbench ; ÷ nginx → no-op", set(func(a *acceptSet) string {
			return withRuns(a.Ratio, a.RoundRatios, "%.2f") + " ; " + withRuns(a.RatioHTTP, a.RoundRatiosHTTP, "%.2f")
		}))
		perMode("", name+" CPU µs per request (medians)", set(func(a *acceptSet) string {
			if len(a.MedianCPUUsPerRequest) == 0 {
				return "-"
			}
			return formatCPUPerRequest(a.MedianCPUUsPerRequest)
		}))
	}
	perMode("3 delivery", "worker drain msg/s", func(m *modeResult) string {
		return withRuns(m.DeliveryMedian, pluck(m.Delivery, func(r deliveryRun) float64 { return r.Rate }), "%.0f")
	})
	perMode("", "plain SMTP msg/s", func(m *modeResult) string {
		return withRuns(m.SMTPMedianRate, pluck(m.SMTPCeiling, func(r smtpRun) float64 { return r.Rate }), "%.0f")
	})
	perMode("", "smtp-source msg/s", func(m *modeResult) string {
		return withRuns(m.SMTPSourceMedianRate, pluck(m.SMTPSource, func(r smtpRun) float64 { return r.Rate }), "%.0f")
	})
	perMode("", "drain ÷ plain SMTP", func(m *modeResult) string {
		return withRuns(m.DeliveryRatio, m.DeliveryRoundRate, "%.2f")
	})
	perMode("", "drain ÷ smtp-source", func(m *modeResult) string {
		return withRuns(m.DeliveryRatioSource, m.DeliveryRoundRateSource, "%.2f")
	})
	perMode("", "information: smtp-source, the worker's own message, msg/s", func(m *modeResult) string {
		if len(m.SMTPSourceWorker) == 0 {
			return "-"
		}
		return withRuns(m.SMTPSourceWorkerMedianRate, pluck(m.SMTPSourceWorker, func(r smtpRun) float64 { return r.Rate }), "%.0f")
	})
	perMode("", "information: drain ÷ that smtp-source", func(m *modeResult) string {
		if len(m.SMTPSourceWorker) == 0 {
			return "-"
		}
		return withRuns(m.DeliveryRatioSourceWorker, m.DeliveryRoundRateSourceWorker, "%.2f")
	})
	perMode("", "information: Mailpit CPU µs per msg under that smtp-source", func(m *modeResult) string {
		var v []string
		for _, r := range m.SMTPSourceWorker {
			v = append(v, fmt.Sprintf("%.0f", r.MailpitCPUUs))
		}
		if len(v) == 0 {
			return "-"
		}
		return strings.Join(v, ", ")
	})
	perMode("", "drain per msg: Postgres commits / Redis calls", func(m *modeResult) string {
		var v []string
		for _, d := range m.Delivery {
			if d.PerMessage != nil {
				var calls float64
				for _, n := range d.PerMessage.Redis {
					calls += n
				}
				v = append(v, fmt.Sprintf("%.2f / %.2f", d.PerMessage.PgCommits, calls))
			}
		}
		if len(v) == 0 {
			return "-"
		}
		return strings.Join(v, ", ")
	})
	perMode("", "CPU µs per msg: Mailpit under smtp-source; drain: Mailpit / worker / Postgres", func(m *modeResult) string {
		var src, drain []string
		for _, r := range m.SMTPSource {
			src = append(src, fmt.Sprintf("%.0f", r.MailpitCPUUs))
		}
		for _, d := range m.Delivery {
			if p := d.PerMessage; p != nil {
				drain = append(drain, fmt.Sprintf("%.0f / %.0f / %.0f", p.MailpitCPUSeconds*1e6, p.WorkerCPUSeconds*1e6, p.PgCPUSeconds*1e6))
			}
		}
		if len(src)+len(drain) == 0 {
			return "-"
		}
		return strings.Join(src, ", ") + "; " + strings.Join(drain, ", ")
	})
	// Phase 4's two runs, each in the same rows; a run that did not
	// happen shows why in its first row.
	e2eRows := func(phase, rateFigure string, pick func(m *modeResult) (run *e2eRun, skipped string), rate func(e *e2eRun) string) {
		cell := func(f func(e *e2eRun) string) func(m *modeResult) string {
			return func(m *modeResult) string {
				if e, _ := pick(m); e != nil {
					return f(e)
				}
				return "-"
			}
		}
		perMode(phase, rateFigure, func(m *modeResult) string {
			if e, skipped := pick(m); e == nil && skipped != "" {
				return "skipped: " + skipped
			}
			return cell(rate)(m)
		})
		perMode("", "achieved req/s ("+e2eVariant+"), late starts", cell(func(e *e2eRun) string {
			return fmt.Sprintf("%.0f, %d late", e.AchievedRate, e.Late)
		}))
		perMode("", "accepted→sent p50 / p90 / p99 / max ms", cell(func(e *e2eRun) string {
			l := e.AcceptedToSentMs
			return fmt.Sprintf("%.0f / %.0f / %.0f / %.0f", l.P50, l.P90, l.P99, l.Max)
		}))
		perMode("", "202 p50 / p99 ms", cell(func(e *e2eRun) string {
			return fmt.Sprintf("%.1f / %.1f", e.ClientLatencyMs.P50, e.ClientLatencyMs.P99)
		}))
		perMode("", "max depth waiting / lag", cell(func(e *e2eRun) string {
			return fmt.Sprintf("%.0f / %.0f", e.MaxDepth["waiting"], e.MaxDepth["lag"])
		}))
		perMode("", "errors / lost", cell(func(e *e2eRun) string {
			return fmt.Sprintf("%d / %d", e.Errors(), max(0, e.Accepted-e.Sent))
		}))
	}
	e2eRows("4 end to end", "offered rate (issue 14's): min(½ max accept, 0.8 × smtp-source)",
		func(m *modeResult) (*e2eRun, string) { return m.E2E, "" },
		func(e *e2eRun) string {
			c := e.RateChoice
			if c == nil {
				return fmt.Sprintf("%.0f", e.TargetRate)
			}
			return fmt.Sprintf("%.0f = min(½ × %.0f %s, 0.8 × %.0f): %s", c.Rate, c.MaxAccept, c.AcceptSet, c.SMTPSource/0.8, c.ChosenBy)
		})
	e2eRows("4 at the drain's pace", "offered rate, information, not issue 14's rate: 0.8 × 1 ÷ (1 ÷ max json+key accept + 1 ÷ median drain of queued rows)",
		func(m *modeResult) (*e2eRun, string) { return m.E2ESustained, m.E2ESustainedSkipped },
		func(e *e2eRun) string {
			c := e.DrainRateChoice
			if c == nil {
				return fmt.Sprintf("%.0f", e.TargetRate)
			}
			return fmt.Sprintf("%.0f = %.1f × 1 ÷ (1 ÷ %.0f + 1 ÷ %s)", c.Rate, c.Factor, c.MaxAccept, withRuns(c.DrainMedian, c.Drains, "%.0f"))
		})
	e2eRows("4 highest bounded rate", "offered rate, information: the highest the queue stayed bounded at, by a search of short trials",
		func(m *modeResult) (*e2eRun, string) { return m.E2EBounded, m.E2ESearchSkipped },
		func(e *e2eRun) string {
			c := e.SearchChoice
			if c == nil {
				return fmt.Sprintf("%.0f", e.TargetRate)
			}
			verified := "judged bounded in the search"
			if !c.Verified {
				verified = "no trial judged bounded"
			}
			return fmt.Sprintf("%.0f (%d trials from %.0f..%.0f; %s)", c.Rate, c.Trials, c.StartLow, c.StartHigh, verified)
		})
	perMode("", "search trials req/s: bounded", func(m *modeResult) string {
		if m.E2ESearch == nil {
			return "-"
		}
		return m.E2ESearch.trialsText() + " (" + m.E2ESearch.Stopped + ")"
	})
	perMode("", "this run bounded (criterion)", func(m *modeResult) string {
		if m.E2EBounded == nil || m.E2EBounded.SearchChoice == nil {
			return "-"
		}
		return judgementText(m.E2EBounded.SearchChoice.Judgement)
	})
	var after []string
	for _, m := range res.Modes {
		for _, r := range m.RSS {
			if !contains(after, r.After) {
				after = append(after, r.After)
			}
		}
	}
	for i, kind := range []string{"api", "worker"} {
		perMode(map[bool]string{true: "5 RSS"}[i == 0], kind+" MiB after "+strings.Join(after, " / "), func(m *modeResult) string {
			var v []string
			peak := 0.0
			for _, a := range after {
				v = append(v, "-")
				for _, r := range m.RSS {
					if r.After == a {
						p, ok := r.Procs[kind]
						if ok {
							v[len(v)-1] = fmt.Sprintf("%.0f", p.RSSMiB)
							peak = max(peak, p.HWMMiB)
						}
					}
				}
			}
			return strings.Join(v, " / ") + fmt.Sprintf(" (peak %.0f)", peak)
		})
	}
	for _, kind := range []string{"api", "worker"} {
		perMode("", kind+" MiB sampled every second: peak VmRSS (phase), VmHWM", func(m *modeResult) string {
			r := m.RSSSampled
			if r == nil {
				return "-"
			}
			var v []string
			for _, name := range sortedKeys(r.Processes) {
				if instanceOf(name, kind) {
					p := r.Processes[name]
					v = append(v, fmt.Sprintf("%.0f (%s), %.0f", p.RSSMiB, p.Phase, p.HWMMiB))
				}
			}
			if len(v) == 0 {
				return "-"
			}
			return strings.Join(v, "; ") + fmt.Sprintf(" [%d samples]", r.Samples)
		})
	}
	tw.Flush()

	if len(res.Comparison) > 0 {
		fmt.Fprintln(w)
		for _, p := range s.AcceptRuns {
			if r, ok := res.Comparison[comparisonKey(p.Variant, p.Connections)]; ok && r > 0 {
				fmt.Fprintf(w, "observability on vs off: accept %s c%d throughput %+.0f %% (on ÷ off %.2f; target: at most 15 %% less)\n",
					p.Variant, p.Connections, (r-1)*100, r)
			}
		}
		if r := res.Comparison["delivery_rate_on_over_off"]; r > 0 {
			fmt.Fprintf(w, "observability on vs off: delivery rate %+.0f %%\n", (r-1)*100)
		}
	}
	printTargets(w, res.Targets)
	if len(res.Errors) > 0 {
		fmt.Fprintf(w, "\nerrors (%d):\n", len(res.Errors))
		for _, e := range res.Errors {
			fmt.Fprintf(w, "  - %s\n", strings.ReplaceAll(e, "\n", "\n    "))
		}
	}
}

// printTargets writes the targets block: each target, its subject and
// mode, what it wants, the figure and met / not met / not measured.
func printTargets(w io.Writer, targets []target) {
	if len(targets) == 0 {
		return
	}
	fmt.Fprintln(w, "\ntargets (issue 14; figures, not the exit status):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\tsubject\tobservability\twant\tmeasured\tstatus")
	for _, t := range targets {
		subject := t.Subject
		if subject == "" {
			subject = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.Target, subject, t.Observability, t.Want, t.MeasuredText, t.Status)
	}
	tw.Flush()
}

// judgementText is "yes" or "no: " and the conditions not met.
func judgementText(j e2eJudgement) string {
	if j.Bounded {
		return "yes"
	}
	return "no: " + strings.Join(j.Failed, "; ")
}

// withRuns formats a median followed by each run's value.
func withRuns(med float64, runs []float64, format string) string {
	if len(runs) == 0 {
		return "-"
	}
	parts := make([]string, len(runs))
	for i, r := range runs {
		parts[i] = fmt.Sprintf(format, r)
	}
	return fmt.Sprintf(format, med) + " [" + strings.Join(parts, " ") + "]"
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
