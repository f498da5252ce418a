package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/carteiro/carteiro/internal/devstack"
)

func main() { os.Exit(run()) }

// logger writes progress lines to stderr and to the run's bench.log.
type logger struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *logger) printf(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "bench %s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
}

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	s, err := loadSettings(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	repo, err := repoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	if err := prerequisites(repo, s); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	lock, err := lockDatabase(ctx, s)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	defer lock.Close(context.Background())
	runDir, err := os.MkdirTemp("", "carteiro-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	logFile, err := os.Create(filepath.Join(runDir, "bench.log"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	defer logFile.Close()
	log := &logger{w: io.MultiWriter(os.Stderr, logFile)}

	res := &results{
		Date:        time.Now().UTC().Format(time.RFC3339),
		GitRevision: gitRevision(ctx, repo),
		Command:     s.Command,
		Settings:    s,
		Machine:     describeMachine(),
		Versions:    toolVersions(ctx, nginxBin()),
		Method:      method(s),
		Environment: benchEnvironment(),
		Errors:      []string{},
		RunDir:      runDir,
	}
	if res.Command == "" {
		res.Command = strings.Join(os.Args, " ")
	}
	log.printf("run directory %s (logs of every component)", runDir)

	b := &bench{s: s, repo: repo, runDir: runDir, log: log, logFile: logFile, binDir: filepath.Join(runDir, "bin")}
	res.Binaries, err = copyBinaries(repo, b.binDir, stackBinaries(s))
	if err == nil {
		b.redis, err = startRedis(ctx, filepath.Join(runDir, "redis"), logFile)
	}
	if err != nil {
		res.Errors = append(res.Errors, err.Error())
	} else {
		log.printf("private redis-server on %s", b.redis.Addr)
		for _, mode := range s.Modes {
			m := b.runMode(ctx, mode)
			res.Modes = append(res.Modes, m)
			for _, e := range m.Errors {
				res.Errors = append(res.Errors, "observability "+mode+": "+e)
			}
			if ctx.Err() != nil {
				break
			}
		}
		b.redis.Stop()
	}
	if res.Postgres == nil {
		res.Postgres = b.postgres
	}
	res.Machine.LoadEnd = loadavg()
	res.Machine.FinishedAt = time.Now().UTC().Format(time.RFC3339)
	// A signal from here on no longer changes the outcome: the figures
	// are complete.
	interrupted := ctx.Err() != nil
	if interrupted {
		res.Errors = append(res.Errors, "interrupted")
	}
	res.OK = len(res.Errors) == 0
	res.compare()
	res.Targets = evaluateTargets(res)

	keep := s.Keep || s.Profile || !res.OK
	if !keep {
		res.RunDir = ""
	}
	out := s.Out
	if !filepath.IsAbs(out) {
		out = filepath.Join(repo, out)
	}
	if err := res.write(out); err != nil {
		fmt.Fprintln(os.Stderr, "bench: write results:", err)
		res.OK = false
	}
	printTable(os.Stdout, res)
	fmt.Printf("\nresults: %s\n", out)

	cleanupCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if keep {
		fmt.Printf("kept: run directory %s, database %s\n", runDir, s.DBName)
	} else {
		if err := dropDatabase(cleanupCtx, s); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
		}
		// The stacks are down: every supervisor has recorded its exit.
		os.RemoveAll(runDir)
	}
	switch {
	case interrupted:
		return 130
	case !res.OK:
		return 1
	}
	return 0
}

// repoRoot is the repository holding the working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	root, err := devstack.FindRoot(dir)
	if err != nil {
		return "", fmt.Errorf("run from the carteiro repository: %w", err)
	}
	return root, nil
}

// prerequisites checks, before anything starts, every program the run
// needs.
func prerequisites(repo string, s settings) error {
	var missing []string
	if _, err := exec.LookPath(nginxBin()); err != nil {
		missing = append(missing, "nginx: apt-get install nginx")
	}
	for _, p := range []struct{ name, hint string }{
		{"wrk", "apt-get install wrk (scripts/ci-deps.sh installs it)"},
		{"pgbench", "it comes with Debian's postgresql package"},
		{"redis-server", "apt-get install redis-server"},
		{"psql", "apt-get install postgresql-client"},
		{smtpSourceBin(), "apt-get install postfix (smtp-source; scripts/ci-deps.sh installs it)"},
	} {
		if _, err := exec.LookPath(p.name); err != nil {
			missing = append(missing, p.name+": "+p.hint)
		}
	}
	for _, b := range stackBinaries(s) {
		if _, err := os.Stat(filepath.Join(repo, "bin", b)); err != nil {
			missing = append(missing, "bin/"+b+": make build tools jaeger otelcol (make bench does)")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing:\n  %s", strings.Join(missing, "\n  "))
	}
	return nil
}

// stackBinaries are the programs of bin/ the stack runs.
func stackBinaries(s settings) []string {
	bins := []string{"api", "worker", "mailpit", "devstack"}
	if contains(s.Modes, "on") {
		bins = append(bins, "jaeger", "otelcol")
	}
	return bins
}

func nginxBin() string {
	if v := os.Getenv("NGINX_BIN"); v != "" {
		return v
	}
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	return "/usr/sbin/nginx"
}

// method records how each figure is measured, in the results themselves.
func method(s settings) map[string]string {
	worker := "the worker is stopped during each accept run (the accept path alone, as phase 3 is delivery " +
		"alone; both together are phase 4) and started again for the settle that follows"
	if s.AcceptWorker == "run" {
		worker = "the worker runs during each accept run, delivering what is accepted (BENCH_ACCEPT_WORKER=run)"
	}
	return map[string]string{
		"stack": "package devstack, as make dev (native: nginx, api, worker, Mailpit --max 0) with RATE_LIMIT=0, its own DEV_DIR, " +
			"binaries copied from bin/ at the start (see binaries), " +
			"free loopback ports, database " + s.DBName + " dropped and recreated per mode, a private redis-server " +
			"(no persistence) flushed per mode; observability on = OBS=1 (the OpenTelemetry Collector, Jaeger, " +
			"Prometheus, Alertmanager and the nginx, Postgres and Redis exporters; the services' default sampler " +
			"parentbased_always_on: every trace sampled; the collector's tail sampling at its default " +
			"OTELCOL_SAMPLE_PERCENT=100: every trace kept, sent to Jaeger after OTELCOL_DECISION_WAIT)",
		"settle": "before every measured run: wait until nothing is queued, sending, failed or unpublished, " +
			"clear Mailpit, CHECKPOINT, VACUUM (ANALYZE) emails",
		"phase1": fmt.Sprintf("pgbench -n -M prepared -c %d -j %d -T <duration>: one INSERT per transaction into emails "+
			"(id gen_random_uuid(), assunto, mensagem, traceparent, tracestate as the api; next_attempt_at 'infinity' "+
			"so the outbox relay leaves the rows alone; deleted after each run)", s.PgbenchClients, s.PgbenchThreads),
		"phase2": fmt.Sprintf("wrk -t %d -c <conns> -d <duration> --latency -s accept.lua: through nginx, one unique "+
			"message per request, in four variants: json (POST /api/messages, application/json, Accept: "+
			"application/json, as web/app.js posts), form (POST /api, application/x-www-form-urlencoded, a browser's "+
			"Accept, as web/index.html's form posts without script; the api answers with its HTML page), each also "+
			"+key (a unique quoted Idempotency-Key per request, as web/app.js sends one per message); runs of a round: "+
			"%s; errors = answers other than 202 + connect/read/write/timeout errors; "+
			"ratio = median requests/s ÷ median pgbench tps (and each run ÷ its round's); a 2 s warm-up (json+key, 16 "+
			"connections) first; %s",
			s.WrkThreads, planNames(s.AcceptRuns), worker),
		"phase2_http_ceiling": fmt.Sprintf("the same wrk command at %d connections against the stack's own nginx "+
			"configuration (nginx/*.template rendered by devstack) whose only api upstream is a Go net/http handler "+
			"that reads the body and answers 202 without any work; one run per round, after pgbench; "+
			"ratio = median accept requests/s ÷ its median", s.Conns[0]),
		"phase3_smtp_source": "smtp-source (Postfix) -d -s WORKER_CONCURRENCY -m N -F <one message composed as the worker " +
			"does, LF line ends: smtp-source sends CRLF>, into the same Mailpit, timed from its start to its exit, all N " +
			"counted in Mailpit; after the net/smtp ceiling, before the drain, each round; the drain's ratio to it is the target's",
		"phase3_smtp_source_worker_message": "information, no target: after each drain (the worker idle), the newest message in " +
			"Mailpit (one the worker sent in that drain) taken back through Mailpit's API (/api/v1/message/latest/raw), the " +
			"Received and Return-Path fields Mailpit added on receipt left out, Mailpit cleared, then the same smtp-source " +
			"command with it as the -F file (LF line ends), into the same Mailpit; ratio = median drain ÷ its median",
		"phase3": "N messages queued by one direct INSERT (queued, unpublished, with a traceparent sampled only with observability on, as the api stores it) while the worker " +
			"is stopped; the api's outbox relay publishes them to the stream; Mailpit cleared; the worker started " +
			"(the stack's up); time = worker process start (/proc) → the last row's sent_at; all N sent and in " +
			"Mailpit. Ceiling: net/smtp, WORKER_CONCURRENCY connections each kept for the whole run, the same N " +
			"messages composed as the worker does (go-mail), into the same Mailpit; ceiling then drain, each round",
		"phase4": "open model: json+key requests (a unique Idempotency-Key each, as the page) start on a fixed schedule " +
			"at min(½ the highest median json+key requests/s of phase 2, 0.8 × the median smtp-source msg/s of phase 3) (Go " +
			"net/http, at most BENCH_E2E_MAX_IN_FLIGHT waiting at once, past which starts are late and counted); accepted → sent = sent_at - created_at of exactly those rows " +
			"(percentile_cont); queue depth: the api's /metrics (carteiro_queue_depth, carteiro_outbox_unpublished) " +
			"polled every second until the drain ends; waiting = queued + sending + failed. Then, after a settle, the same " +
			"load for as long at the drain's pace: 0.8 × 1 ÷ (1 ÷ the highest median json+key requests/s of phase 2 + 1 ÷ the " +
			"median msg/s of phase 3's drains of queued rows), the stack's capacity to accept and deliver at once on the same cores, " +
			"(phase4_end_to_end_sustained, drain_rate_choice; information, no target; skipped with the reason recorded " +
			"when phase 3 recorded no drain)",
		"phase4_search": fmt.Sprintf("the highest offered rate at which the queue stays bounded (information, no target): "+
			"at most %d trials of %s each (BENCH_E2E_SEARCH_TRIALS, BENCH_E2E_SEARCH_DURATION; 0 trials: none), the same load "+
			"as phase 4's other runs (a settle before each, the queue's depth polled every %s), bisected geometrically "+
			"between a high bound (the lowest rate of phase 4's two runs judged not bounded, else phase 2's highest median "+
			"json+key accept rate) and a low bound (the highest of them judged bounded, else %.2f × the capacity estimate "+
			"1 ÷ (1 ÷ accept + 1 ÷ drain)) until the high bound is within %.0f %% of the low; bounded = in the last %.0f %% of "+
			"the load waiting (queued + sending + failed) at most %.0f s of arrivals and growing over it (least squares) by at "+
			"most %.1f s of arrivals, the last row sent at most %.0f s after the load ended, at most %.0f %% late "+
			"starts, no failed request; then one run of BENCH_E2E_DURATION at the highest rate judged bounded "+
			"(phase4_end_to_end_bounded), judged by the same criterion",
			s.E2ESearchTrials, s.E2ESearchDuration, e2eSearchPoll, e2eSearchLowShare, e2eSearchPrecision*100,
			boundedCriterion().TailShare*100, boundedCriterion().MaxWaitingS, boundedCriterion().MaxGrowthS,
			boundedCriterion().MaxSentAfterLoadS, boundedCriterion().MaxLateShare*100),
		"phase5": "VmRSS (and VmHWM, the peak) from /proc/<pid>/status of the api and worker processes named by " +
			"DEV_DIR's pid files, at the end of each phase; the worker restarts in phase 3",
	}
}

// planNames lists accept runs as "json c16, json+key c16, ...".
func planNames(plans []acceptPlan) string {
	names := make([]string, len(plans))
	for i, p := range plans {
		names[i] = fmt.Sprintf("%s c%d", p.Variant, p.Connections)
	}
	return strings.Join(names, ", ")
}

// benchEnvironment returns the set variables that shape the run: the
// bench's own and the stack's tuning knobs (passed through to the stack).
func benchEnvironment() map[string]string {
	m := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		switch {
		case k == "BENCH_COMMAND":
		case strings.HasPrefix(k, "BENCH_"), strings.HasPrefix(k, "GROUP_COMMIT_"),
			strings.HasPrefix(k, "WORKER_"), strings.HasPrefix(k, "OUTBOX_"),
			strings.HasPrefix(k, "DB_") && !strings.Contains(k, "PASSWORD"),
			k == "LOG_LEVEL", k == "PPROF", k == "API_INSTANCES", k == "MAILPIT_ARGS",
			k == "MAX_ATTEMPTS", k == "SMTP_TIMEOUT", k == "SMTP_DATA_TIMEOUT", k == "JAEGER_MAX_TRACES":
			m[k] = v
		}
	}
	return m
}
