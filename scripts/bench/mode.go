package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// bench is one `make bench` run.
type bench struct {
	s        settings
	repo     string
	runDir   string
	binDir   string
	log      *logger
	logFile  *os.File
	redis    *redisServer
	postgres map[string]string
}

const settleTimeout = 15 * time.Minute

// runMode measures every phase with observability off or on. Errors that
// leave the stack usable are recorded and the run goes on; the others end
// this mode. Everything it started is stopped before it returns.
func (b *bench) runMode(ctx context.Context, mode string) *modeResult {
	m := &modeResult{Observability: mode, Errors: []string{}}
	b.log.printf("[%s] ==== observability %s", mode, mode)
	if err := b.mode(ctx, mode, m); err != nil {
		m.Errors = append(m.Errors, err.Error())
		b.log.printf("[%s] stopped: %v", mode, err)
	}
	m.finish()
	return m
}

func (b *bench) mode(ctx context.Context, mode string, m *modeResult) (err error) {
	s := b.s
	note := func(what string, e error) {
		if e != nil {
			msg := what + ": " + e.Error()
			m.Errors = append(m.Errors, msg)
			b.log.printf("[%s] ERROR %s", mode, msg)
		}
	}
	dir := filepath.Join(b.runDir, mode)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := dropDatabase(ctx, s); err != nil {
		return err
	}
	if err := b.redis.Flush(ctx); err != nil {
		return fmt.Errorf("flush redis: %w", err)
	}

	// Start the stack; a port taken between choosing and binding it (other
	// test runs share the machine) gets one more try on new ports.
	var st *stack
	for attempt := 1; ; attempt++ {
		st, err = newStack(b.repo, b.binDir, filepath.Join(dir, "dev"), mode == "on", b.redis.Addr, s, b.logFile)
		if err != nil {
			return err
		}
		b.log.printf("[%s] starting the stack (DEV_DIR %s): nginx %s", mode, st.dir, st.addr["NGINX_LISTEN"])
		err = st.up(ctx)
		if err == nil {
			break
		}
		if derr := st.down(); derr != nil {
			b.log.printf("[%s] stack down: %v", mode, derr)
		}
		if attempt == 2 || ctx.Err() != nil {
			return fmt.Errorf("the stack did not start: %w", err)
		}
		b.log.printf("[%s] the stack did not start, trying once more on other ports: %v", mode, err)
	}
	defer func() {
		b.log.printf("[%s] stopping the stack", mode)
		if derr := st.down(); derr != nil && err == nil {
			err = derr
		}
	}()

	db, err := openBenchDB(ctx, s)
	if err != nil {
		return fmt.Errorf("bench database: %w", err)
	}
	defer db.Close()
	if b.postgres == nil {
		b.postgres = db.serverInfo(ctx)
	}
	mp := newMailpit(st.url("MAILPIT_UI_ADDR", ""))
	acceptURL := st.url("NGINX_LISTEN", "")
	m.RSS = append(m.RSS, sampleRSS(st, "start"))
	rss := startRSSSampler(time.Second, stackProcs(st), readProcMem)
	defer func() { m.RSSSampled = rss.stop() }() // before the stack stops

	settle := func(before string) error {
		w, err := db.settle(ctx, settleTimeout)
		if err != nil {
			return fmt.Errorf("before %s: %w", before, err)
		}
		if err := mp.Clear(ctx); err != nil {
			return err
		}
		m.Settles = append(m.Settles, settleRecord{Before: before, WaitedS: w.Seconds()})
		return nil
	}

	// Warm-up: pools fill, pages get cached.
	if err := settle("warm-up"); err != nil {
		return err
	}
	warm, werr := runAccept(ctx, s, acceptURL, dir, runPrefix("warmup", mode, 0), "json+key", s.Conns[0], 0, min(2*time.Second, s.Duration.D()))
	note("warm-up", werr)
	m.Warmup = &warm
	if warm.Errors() > 0 {
		note("warm-up", fmt.Errorf("%d error(s) in %d request(s)", warm.Errors(), warm.Requests))
	}

	// The public HTTP ceiling: the stack's nginx configuration in front of
	// a no-op handler.
	var hc *httpCeiling
	if s.Phases != "delivery" {
		var herr error
		hc, herr = startHTTPCeiling(ctx, st.dev.Config, filepath.Join(dir, "noop"), b.logFile)
		note("no-op HTTP ceiling", herr)
		if hc != nil {
			defer hc.stop()
		}
	}

	// Phases 1 and 2, alternating.
	rss.setPhase("1-2")
	for round := 1; round <= s.Rounds && s.Phases != "delivery"; round++ {
		if err := settle(fmt.Sprintf("pgbench round %d", round)); err != nil {
			return err
		}
		p, perr := runPgbench(ctx, s, db, dir, round)
		note(fmt.Sprintf("pgbench round %d", round), perr)
		if p.TPS > 0 {
			m.Ceiling = append(m.Ceiling, p)
		}
		b.log.printf("[%s] round %d  pgbench         %8.0f tps (latency avg %.2f ms)", mode, round, p.TPS, p.LatencyAvgMs)
		if err := ctx.Err(); err != nil {
			return err
		}
		if hc != nil {
			what := fmt.Sprintf("no-op HTTP ceiling round %d", round)
			h, herr := runAccept(ctx, s, hc.url(), dir, runPrefix("noop", mode, round), acceptVariants[0], s.Conns[0], round, s.Duration.D())
			note(what, herr)
			if h.Errors() > 0 {
				note(what, fmt.Errorf("%d error(s) in %d request(s): codes %v, transport %v", h.Errors(), h.Requests, h.Codes, h.WrkErrors))
			}
			if h.Accepted > 0 {
				m.HTTPCeiling = append(m.HTTPCeiling, h)
			}
			b.log.printf("[%s] round %d  nginx → no-op   %8.0f req/s  p50 %.1f  p99 %.1f ms", mode, round, h.RPS, h.LatencyMs.P50, h.LatencyMs.P99)
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		for _, p := range s.AcceptRuns {
			what := fmt.Sprintf("accept %s c%d round %d", p.Variant, p.Connections, round)
			if err := settle(what); err != nil {
				return err
			}
			if s.AcceptWorker == "stop" {
				if err := st.stopWorkers(ctx); err != nil {
					return err
				}
			}
			prefix := runPrefix(fmt.Sprintf("accept %s c%d", p.Variant, p.Connections), mode, round)
			var profiled func() error
			if s.Profile {
				seconds := max(1, min(s.ProfileSeconds, int(s.Duration.D().Seconds())-1))
				profiled = profileAccept(ctx, st.addr["API_INTERNAL_ADDR"], filepath.Join(dir, "profiles"), p.Variant, p.Connections, round, seconds)
			}
			cpuBefore, pgBefore := st.cpuTimes(), db.backendCPU(ctx)
			a, aerr := runAccept(ctx, s, acceptURL, dir, prefix, p.Variant, p.Connections, round, s.Duration.D())
			cpu := cpuByKindSince(cpuBefore, st.cpuTimes())
			cpu[cpuPostgres] = cpuSince(pgBefore, db.backendCPU(ctx))
			if w, ok := a.CPUSeconds[cpuWrk]; ok {
				cpu[cpuWrk] = w
			}
			a.CPUSeconds, a.CPUUsPerRequest = cpu, cpuPerRequest(cpu, a.Accepted)
			if profiled != nil {
				note(what+" api profile", profiled())
			}
			a.WorkerStopped = s.AcceptWorker == "stop"
			if a.WorkerStopped {
				if err := st.up(ctx); err != nil {
					return err
				}
			}
			note(what, aerr)
			if a.Errors() > 0 {
				note(what, fmt.Errorf("%d error(s) in %d request(s): codes %v, transport %v", a.Errors(), a.Requests, a.Codes, a.WrkErrors))
			}
			if a.Accepted > 0 {
				set := m.accept(p.Variant, p.Connections)
				set.Runs = append(set.Runs, a)
			}
			b.log.printf("[%s] round %d  accept %-8s c%-3d %8.0f req/s  p50 %.1f  p99 %.1f  max %.0f ms  errors %d  cpu s %s; µs per request %s",
				mode, round, p.Variant, p.Connections, a.RPS, a.LatencyMs.P50, a.LatencyMs.P99, a.LatencyMs.Max, a.Errors(), formatCPU(a.CPUSeconds), formatCPUPerRequest(a.CPUUsPerRequest))
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	m.RSS = append(m.RSS, sampleRSS(st, "1-2"))

	if s.Phases == "accept" {
		return nil
	}

	// Phase 3: plain SMTP ceiling, then the worker's drain, each round.
	rss.setPhase("3")
	// smtpInto clears Mailpit, then runs one SMTP ceiling run, with
	// Mailpit's CPU per message, and adds it to runs once every message
	// is in Mailpit; a failure is noted. Its error is the clearing's.
	smtpInto := func(runs *[]smtpRun, what string, run func() (smtpRun, error)) (smtpRun, error) {
		if err := mp.Clear(ctx); err != nil {
			return smtpRun{}, err
		}
		mpCPU := stackCPU(st, "mailpit")
		r, err := run()
		r.MailpitCPUUs = cpuSince(mpCPU, stackCPU(st, "mailpit")) * 1e6 / float64(s.N)
		note(what, err)
		if err == nil {
			got, merr := mp.expect(ctx, int64(s.N))
			r.InMailpit = got
			note(what, merr)
			*runs = append(*runs, r)
		}
		return r, nil
	}
	for round := 1; round <= s.Rounds; round++ {
		if err := settle(fmt.Sprintf("delivery round %d", round)); err != nil {
			return err
		}
		prefix := runPrefix("delivery", mode, round)
		d, err := prepareDelivery(ctx, st, db, prefix, s.N)
		if err != nil {
			return fmt.Errorf("delivery round %d: %w", round, err)
		}
		d.Round, d.Concurrency = round, s.WorkerConcurrency
		if d.EmailsRows, err = db.countEmails(ctx); err != nil {
			return fmt.Errorf("delivery round %d: count emails: %w", round, err)
		}
		b.log.printf("[%s] round %d  queued %d (insert %.1f s), on the stream after %.1f s; worker stopped; %d rows in emails",
			mode, round, s.N, d.QueueSeconds, d.PublishS, d.EmailsRows)

		addr := st.addr["MAILPIT_SMTP_ADDR"]
		c, err := smtpInto(&m.SMTPCeiling, fmt.Sprintf("smtp ceiling round %d", round), func() (smtpRun, error) {
			return runSMTPCeiling(ctx, addr, runPrefix("smtp", mode, round), s.N, s.WorkerConcurrency, round)
		})
		if err != nil {
			return err
		}
		b.log.printf("[%s] round %d  plain SMTP      %8.0f msg/s (%d connections, %d bytes each; Mailpit CPU %.0f µs per message)", mode, round, c.Rate, c.Connections, c.AvgBytes, c.MailpitCPUUs)
		if err := ctx.Err(); err != nil {
			return err
		}
		ss, err := smtpInto(&m.SMTPSource, fmt.Sprintf("smtp-source round %d", round), func() (smtpRun, error) {
			return runSMTPSource(ctx, addr, dir, runPrefix("smtp-source", mode, round), s.N, s.WorkerConcurrency, round)
		})
		if err != nil {
			return err
		}
		b.log.printf("[%s] round %d  smtp-source     %8.0f msg/s (%d sessions, %d bytes each; Mailpit CPU %.0f µs per message)", mode, round, ss.Rate, ss.Connections, ss.AvgBytes, ss.MailpitCPUUs)
		if err := ctx.Err(); err != nil {
			return err
		}

		timeout := 10*time.Minute + time.Duration(s.N/50)*time.Second
		// Mailpit emptied first (runDelivery clears it again, then
		// empty): deleting smtp-source's messages is not the drain's CPU.
		if err := mp.Clear(ctx); err != nil {
			return err
		}
		before := b.work(ctx, db, st)
		var profile func() func() []string
		if s.Profile {
			profile = func() func() []string {
				return profileDrain(ctx, st.addr["WORKER_INTERNAL_ADDR"], filepath.Join(dir, "profiles"), round, s.ProfileSeconds)
			}
		}
		d, derr := runDelivery(ctx, st, db, mp, d, prefix, timeout, profile)
		// Idle backends report their statistics within 10 s
		// (PGSTAT_IDLE_INTERVAL); the relay's sweeps meanwhile add a few
		// commits a second.
		if derr == nil && sleep(ctx, 11*time.Second) == nil {
			pm := b.work(ctx, db, st).perMessage(before, s.N)
			d.PerMessage = &pm
			b.log.printf("[%s] round %d  per message: %.2f Postgres commits, %.2f rows updated (%.2f HOT), index +%.0f B, WAL %.0f B (server), backend CPU %.0f µs; worker CPU %.0f µs; Mailpit CPU %.0f µs; Redis %s",
				mode, round, pm.PgCommits, pm.PgUpdated, pm.PgHOTUpdated, pm.PgIndexBytes, pm.PgWALBytes, pm.PgCPUSeconds*1e6, pm.WorkerCPUSeconds*1e6, pm.MailpitCPUSeconds*1e6, formatCalls(pm.Redis))
		}
		note(fmt.Sprintf("delivery round %d", round), derr)
		if derr == nil {
			m.Delivery = append(m.Delivery, d)
		}
		b.log.printf("[%s] round %d  worker drain    %8.0f msg/s (%.2f s, worker ready after %.2f s)", mode, round, d.Rate, d.Seconds, d.WorkerReadyS)
		if len(st.pids("worker")) == 0 {
			return errors.New("no worker running after the delivery run")
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if s.WorkerMessage && derr == nil {
			// Information beside the ceiling: smtp-source sending what
			// the worker sent (workermessage.go); the worker is idle.
			what := fmt.Sprintf("smtp-source (the worker's message) round %d", round)
			msg, err := workerMessage(ctx, mp)
			note(what, err)
			if err == nil {
				file := filepath.Join(dir, "smtp-source-worker-r"+strconv.Itoa(round)+".eml")
				ws, err := smtpInto(&m.SMTPSourceWorker, what, func() (smtpRun, error) {
					return smtpSourceFile(ctx, addr, file, msg, s.N, s.WorkerConcurrency, round)
				})
				if err != nil {
					return err
				}
				b.log.printf("[%s] round %d  smtp-source, the worker's message %8.0f msg/s (%d sessions, %d bytes each; Mailpit CPU %.0f µs per message; information)",
					mode, round, ws.Rate, ws.Connections, ws.AvgBytes, ws.MailpitCPUUs)
			}
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	m.RSS = append(m.RSS, sampleRSS(st, "3"))
	if s.Phases == "delivery" {
		return nil
	}

	// Phase 4: end to end at the rate delivery can keep up with (issue 14).
	rss.setPhase("4")
	if err := settle("end to end"); err != nil {
		return err
	}
	m.finish()
	choice := chooseE2ERate(m.Accept, m.SMTPSourceMedianRate)
	b.log.printf("[%s] end to end at %.0f req/s for %s: min(½ × %.0f (%s), 0.8 × smtp-source %.0f) chosen by %s",
		mode, choice.Rate, s.E2EDuration, choice.MaxAccept, choice.AcceptSet, m.SMTPSourceMedianRate, choice.ChosenBy)
	var heap func() error
	if s.Profile {
		heap = profileHeap(ctx, st.addr["API_INTERNAL_ADDR"], filepath.Join(dir, "profiles"), "e2e", s.E2EDuration.D()*9/10)
	}
	e, eerr := runE2E(ctx, st, db, mp, runPrefix("e2e", mode, 1), choice.Rate, s.E2EDuration.D(), s.E2EMaxInFlight, time.Second)
	e.RateChoice = &choice
	if heap != nil {
		note("end to end api heap profile", heap())
	}
	m.E2E = &e
	note("end to end", eerr)
	b.logE2E(mode, "end to end", e)
	if err := ctx.Err(); err != nil {
		return err
	}

	// Phase 4 again at the drain's pace: the latency carteiro delivers
	// when it keeps up (information; issue 14's rate is above).
	const sustained = "end to end at the drain's pace"
	pace, skip := chooseDrainE2ERate(m.Delivery, choice.MaxAccept)
	if skip == "" {
		if err := settle(sustained); err != nil {
			note(sustained, err)
			skip = "the settle before it failed"
		}
	}
	if skip != "" {
		m.E2ESustainedSkipped = skip
		b.log.printf("[%s] %s: skipped: %s", mode, sustained, skip)
	} else {
		b.log.printf("[%s] %s at %.0f req/s for %s: %.1f × 1 ÷ (1 ÷ accept %.0f + 1 ÷ drain %s) = %.1f × %.0f msg/s (information, not issue 14's rate)",
			mode, sustained, pace.Rate, s.E2EDuration, pace.Factor, pace.MaxAccept, withRuns(pace.DrainMedian, pace.Drains, "%.0f"), pace.Factor, pace.Capacity)
		e, eerr := runE2E(ctx, st, db, mp, runPrefix("e2e-sustained", mode, 1), pace.Rate, s.E2EDuration.D(), s.E2EMaxInFlight, time.Second)
		e.DrainRateChoice = &pace
		m.E2ESustained = &e
		note(sustained, eerr)
		b.logE2E(mode, "drain's pace", e)
		if err := ctx.Err(); err != nil {
			return err
		}
	}

	// Phase 4's search: the highest rate at which the queue stays
	// bounded, and one run at it (information).
	if err := b.searchE2E(ctx, st, db, mp, mode, m, pace.Capacity, choice.MaxAccept, settle, note); err != nil {
		return err
	}
	m.RSS = append(m.RSS, sampleRSS(st, "4"))

	if st.obs {
		c, err := checkObservability(ctx, st)
		m.ObsCheck = &c
		note("observability check", err)
		b.log.printf("[%s] Jaeger services %v (after %.0f s), Prometheus targets up %d of %d, jobs %v, down %v",
			mode, c.JaegerServices, c.JaegerWaitedS, c.PrometheusUp, c.PrometheusAll, c.PrometheusJobs, c.PrometheusDown)
	}
	return nil
}

// logE2E prints one phase 4 run's figures under what.
func (b *bench) logE2E(mode, what string, e e2eRun) {
	b.log.printf("[%s] %-15s %8.0f req/s  accepted→sent p50 %.0f  p99 %.0f ms  max waiting %.0f  errors %d  late starts %d",
		mode, what, e.AchievedRate, e.AcceptedToSentMs.P50, e.AcceptedToSentMs.P99, e.MaxDepth["waiting"], e.Errors(), e.Late)
}
