// Command bench is `make bench`: it measures carteiro against this
// machine's own limits and prints a table, writing every raw figure to
// bench/results.json.
//
// For each observability mode (off, then on: make dev OBS=1's OpenTelemetry
// Collector, Jaeger and Prometheus running, every trace sampled and kept)
// it starts a private native stack with package devstack,
// the launcher of make dev (RATE_LIMIT=0, its own DEV_DIR, free loopback
// ports, a fresh database, a private redis-server without persistence,
// Mailpit keeping every message) and runs:
//
//  1. ceiling: pgbench, 16 clients, one single-row INSERT per transaction
//     into the same emails table;
//  2. accept path: wrk (accept.lua) POSTing through nginx, the worker
//     stopped meanwhile (BENCH_ACCEPT_WORKER), in four variants: json
//     (POST /api/messages, application/json, what web/app.js posts), form
//     (POST /api, application/x-www-form-urlencoded, what web/index.html's
//     form posts without script), each with and without a unique
//     Idempotency-Key per request (json+key, form+key; the page's script
//     always sends one); all four at 16 connections, and the variants of
//     BENCH_ACCEPT_C64 (json+key, the page's path) at 64: on 2 cores every
//     variant at 64 would add four runs a round for little more than the
//     keyed path's tail under contention tells. Ceiling: the same wrk at 16
//     connections through the stack's own nginx configuration to a Go
//     handler that does no work (nginx → no-op); phases 1 and 2 alternate
//     (pgbench, nginx → no-op, then each accept run) BENCH_ROUNDS times;
//     each variant's median and p99, its ratio to pgbench and to nginx →
//     no-op (medians, and each run over its own round's);
//  3. delivery: BENCH_N messages queued and on the stream with the worker
//     stopped, then the worker started and timed until every row is sent and
//     in Mailpit; ceilings: a plain SMTP client (net/smtp) with as many
//     connections as WORKER_CONCURRENCY, and Postfix's smtp-source -d -s
//     WORKER_CONCURRENCY (the public one, which the drain's target is
//     against), each pushing the same number of messages of the same size
//     into the same Mailpit; alternated BENCH_ROUNDS times; after each
//     drain, for information, smtp-source again with a message the worker
//     sent in it, taken back from Mailpit (its Received and Return-Path
//     left out), and the drain's ratio to that run;
//  4. end to end: an open-model (fixed rate) load of json+key (the page's
//     path) for BENCH_E2E_DURATION at the rate delivery can keep up with:
//     min(½ the highest median json+key accept rate of phase 2, 0.8 × the
//     median smtp-source rate of phase 3), both of the same mode; the rate
//     and the term that chose it are printed and recorded; then accepted →
//     sent latency from the rows' timestamps (target p99 ≤ 500 ms) and the
//     highest queue depth seen. Then, after a settle, the same load for the
//     same BENCH_E2E_DURATION at the drain's own pace: 0.8 × the stack's
//     capacity to accept and deliver at once, 1 ÷ (1 ÷ the highest median
//     json+key accept rate + 1 ÷ the median rate of phase 3's drains of
//     queued rows) (both share the same cores), the latency carteiro
//     delivers when it keeps up (issue 14's rate may exceed what the
//     drain sustains on the machine, and then its p99 measures the run's
//     length). That run is information beside the targets, with no
//     target of its own; it is skipped, with the reason printed and
//     recorded, when phase 3 recorded no drain or a rate below 1/s.
//     Then a search for the highest offered rate at which the stack,
//     accepting and delivering at once, keeps its queue bounded (in the
//     last half of the load, waiting at most a second of arrivals and
//     growing by at most half a second of arrivals; every message sent
//     within 2 s of the load's end; see e2eCriterion): short trials (BENCH_E2E_SEARCH_DURATION) bisected
//     between the lowest of the runs above judged not bounded (else the
//     highest accept rate) and the highest judged bounded (else a quarter
//     of the capacity estimate), at most BENCH_E2E_SEARCH_TRIALS; then one
//     run of BENCH_E2E_DURATION at the rate found, with its accepted →
//     sent percentiles, deepest queue and errors: information, no target;
//  5. RSS of api and worker: VmRSS and VmHWM (the kernel's peak) of every
//     api and worker process sampled every second throughout the mode by
//     a goroutine (peaks, and the phase the highest VmRSS was seen in),
//     plus a snapshot at the end of each phase; against 64 MiB.
//
// With observability on, a check at the end proves it was: Jaeger has
// spans from the api and the worker (waiting up to the collector's
// OTELCOL_DECISION_WAIT and 30 s for them), and Prometheus's jobs
// carteiro-api, carteiro-worker and otelcol are up (every job's state is
// recorded).
//
// Phase 3 also records the rows of emails at each drain (the table the
// drain works on grows by what phases 2 and 3 add), and the CPU time per
// message of Mailpit (each SMTP run and drain), the worker and the
// bench database's Postgres backends (each drain).
//
// At the end, a targets block (printed and in the results) sets each
// target of issue 14 beside its figure, met, not met or not measured:
// accept ≥ 1.0× pgbench and p99 ≤ 50 ms per variant at 16 connections
// (observability off); with observability on at most 15 % less accept
// throughput per accept run; drain ≥ 0.8× smtp-source; the third drain
// round within 10 % of the first with 100,000+ rows in emails; accepted →
// sent p99 ≤ 500 ms at issue 14's rate (phase 4's first run); api and
// worker RSS ≤ 64 MiB. Phase 4's p99 at the drain's pace and at the
// highest bounded rate the search found are shown in the block for
// information (status "information"), with nothing wanted of them.
//
// Timings are figures, never pass/fail: the exit status is non-zero only
// when something broke (a component did not start, a request failed, a
// message was lost). Everything it started is stopped on the way out, also
// on failure or SIGINT.
//
// The binaries of bin/ are copied at the start, so both modes run the same
// build even if bin/ is rebuilt meanwhile.
//
// Settings (environment):
//
//	BENCH_DURATION       10s    each pgbench and accept run
//	BENCH_N              20000  messages per delivery run (phase 3)
//	BENCH_E2E_DURATION   60s    phase 4
//	BENCH_ROUNDS         3      ceiling/measurement alternations
//	BENCH_E2E_MAX_IN_FLIGHT 256 phase 4's requests waiting for an answer at
//	                            once; past it starts are late (counted),
//	                            as a real client pool would queue them
//	BENCH_MODES          off,on observability modes, in order
//	BENCH_OUT            bench/results.json
//	BENCH_E2E_SEARCH_TRIALS   5   phase 4's search for the highest bounded
//	                              rate: at most this many trials (0: no
//	                              search and no run at its rate)
//	BENCH_E2E_SEARCH_DURATION 10s each trial (at least 4s)
//	BENCH_ACCEPT_C64     json+key  the variants (comma-separated, all or
//	                               none) also measured at 64 connections
//	BENCH_ACCEPT_WORKER  stop   stop: the worker is stopped during each
//	                            accept run (the accept path alone; what it
//	                            accepted is delivered before the next run);
//	                            run: it delivers while phase 2 runs
//	BENCH_PHASES         all    accept: phases 1 and 2 alone; delivery:
//	                            phase 3 alone (each with the warm-up and
//	                            RSS); what it skips is "not measured"
//	BENCH_PROFILE        0      1: the stack runs with PPROF=1 and each
//	                            drain keeps the worker's CPU profile (its
//	                            first BENCH_PROFILE_SECONDS, 5), block and
//	                            mutex profiles and an execution trace (2 s,
//	                            from 1 s in), each accept run the api's
//	                            CPU profile (as long, within the run), and
//	                            phase 4 the api's heap profile (at 90 % of
//	                            its load), in <run dir>/<mode>/profiles
//	                            (implies keeping the run directory)
//	BENCH_SMTP_SOURCE_WORKER_MESSAGE 1  0: leave out, after each drain,
//	                            smtp-source sending N copies of a message
//	                            the drain delivered, taken back from
//	                            Mailpit (information beside the ceiling)
//	BENCH_KEEP           0      1: keep the run directory (logs) and the
//	                            database afterwards (kept anyway on failure)
//	BENCH_COMMAND               the command line recorded in the results
//	                            (the Makefile sets it)
//
// Variables of the stack itself (WORKER_CONCURRENCY, LOG_LEVEL, PPROF,
// GROUP_COMMIT_*, ...) pass through to the stack. DB_HOST must be a
// loopback address; DB_ADMIN_USER (postgres) creates and drops the
// database BENCH_DB (carteiro_bench) and runs pgbench.
package main
