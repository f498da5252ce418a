package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// settings are the knobs of one `make bench` run.
type settings struct {
	Duration    jsonDuration `json:"duration"`
	N           int          `json:"n"`
	E2EDuration jsonDuration `json:"e2e_duration"`
	Rounds      int          `json:"rounds"`
	Modes       []string     `json:"modes"`
	// Conns are phase 2's connection counts: every variant runs at the
	// first (16); AcceptRuns lists what runs at each.
	Conns []int `json:"connections"`
	// AcceptRuns are phase 2's runs of each round, in order: every
	// acceptVariant at 16 connections, then BENCH_ACCEPT_C64's at 64.
	AcceptRuns []acceptPlan `json:"accept_runs"`
	// PgbenchClients and PgbenchThreads are pgbench's -c and -j.
	PgbenchClients int `json:"pgbench_clients"`
	PgbenchThreads int `json:"pgbench_threads"`
	// WrkThreads is wrk's -t.
	WrkThreads int `json:"wrk_threads"`
	// WorkerConcurrency is the worker's WORKER_CONCURRENCY (default 8, the
	// worker's own default), and the SMTP ceilings' number of connections
	// (net/smtp's, and smtp-source's -s).
	WorkerConcurrency int `json:"worker_concurrency"`
	// E2EMaxInFlight caps phase 4's requests in flight.
	E2EMaxInFlight int `json:"e2e_max_in_flight"`
	// E2ESearchTrials is the most trial runs phase 4's search for the
	// highest bounded rate makes (0: no search, and no run at its rate);
	// E2ESearchDuration each trial's length.
	E2ESearchTrials   int          `json:"e2e_search_trials"`
	E2ESearchDuration jsonDuration `json:"e2e_search_duration"`
	// AcceptWorker is "run" or "stop": the worker during phase 2.
	AcceptWorker string `json:"accept_worker"`
	// Phases is "all", "accept" or "delivery" (BENCH_PHASES): accept runs
	// phases 1 and 2 alone, for work on the accept path; delivery phase 3
	// alone, for work on the drain (each with the RSS sampling).
	Phases string `json:"phases"`
	// Profile keeps the worker's CPU, block and mutex profiles of each
	// drain, the api's CPU profile of each accept run and its heap
	// profile in phase 4 (BENCH_PROFILE; see profile.go), ProfileSeconds
	// long.
	Profile        bool `json:"profile"`
	ProfileSeconds int  `json:"profile_seconds"`
	// WorkerMessage runs, after each drain, smtp-source with a message the
	// worker sent in it (BENCH_SMTP_SOURCE_WORKER_MESSAGE, on by default;
	// see workermessage.go): information beside the ceiling.
	WorkerMessage bool   `json:"smtp_source_worker_message"`
	Out           string `json:"out"`
	Keep          bool   `json:"keep"`
	DBName        string `json:"db_name"`
	DBHost        string `json:"db_host"`
	DBPort        string `json:"db_port"`
	DBAdmin       string `json:"db_admin_user"`
	// Command is the command line recorded in the results.
	Command string `json:"-"`
}

// loadSettings reads the BENCH_* variables (and the few stack variables the
// bench needs to know) through getenv.
func loadSettings(getenv func(string) string) (settings, error) {
	var errs []string
	fail := func(name, format string, a ...any) {
		errs = append(errs, fmt.Sprintf("%s: %s", name, fmt.Sprintf(format, a...)))
	}
	dur := func(name string, def time.Duration) jsonDuration {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			return jsonDuration(def)
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			fail(name, "want a positive duration such as 10s, got %q", v)
			return jsonDuration(def)
		}
		return jsonDuration(d)
	}
	num := func(name string, def, lo, hi int) int {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			fail(name, "want a whole number in %d..%d, got %q", lo, hi, v)
			return def
		}
		return n
	}
	flag := func(name string, def bool) bool {
		switch v := strings.ToLower(strings.TrimSpace(getenv(name))); v {
		case "":
			return def
		case "1", "true", "yes", "on":
			return true
		case "0", "false", "no", "off":
			return false
		default:
			fail(name, "want 1 or 0 (true/false, yes/no, on/off), got %q", v)
			return def
		}
	}
	str := func(name, def string) string {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return v
		}
		return def
	}

	s := settings{
		Duration:          dur("BENCH_DURATION", 10*time.Second),
		N:                 num("BENCH_N", 20000, 1, 10_000_000),
		E2EDuration:       dur("BENCH_E2E_DURATION", 60*time.Second),
		Rounds:            num("BENCH_ROUNDS", 3, 1, 99),
		E2EMaxInFlight:    num("BENCH_E2E_MAX_IN_FLIGHT", 256, 1, 4096),
		E2ESearchTrials:   num("BENCH_E2E_SEARCH_TRIALS", 5, 0, 20),
		E2ESearchDuration: dur("BENCH_E2E_SEARCH_DURATION", 10*time.Second),
		Conns:             []int{16, 64},
		PgbenchClients:    16,
		PgbenchThreads:    2,
		WrkThreads:        2,
		WorkerConcurrency: num("WORKER_CONCURRENCY", 8, 1, 256),
		AcceptWorker:      str("BENCH_ACCEPT_WORKER", "stop"),
		Phases:            str("BENCH_PHASES", "all"),
		Out:               str("BENCH_OUT", "bench/results.json"),
		DBName:            str("BENCH_DB", "carteiro_bench"),
		DBHost:            str("DB_HOST", "127.0.0.1"),
		DBPort:            str("DB_PORT", "5432"),
		DBAdmin:           str("DB_ADMIN_USER", "postgres"),
		Command:           strings.TrimSpace(getenv("BENCH_COMMAND")),
	}
	var err error
	s.ProfileSeconds = num("BENCH_PROFILE_SECONDS", 5, 1, 600)
	s.Profile = flag("BENCH_PROFILE", false)
	s.WorkerMessage = flag("BENCH_SMTP_SOURCE_WORKER_MESSAGE", true)
	s.Keep = flag("BENCH_KEEP", false)
	for m := range strings.SplitSeq(str("BENCH_MODES", "off,on"), ",") {
		switch m = strings.TrimSpace(m); m {
		case "off", "on":
			s.Modes = append(s.Modes, m)
		case "":
		default:
			fail("BENCH_MODES", "want a list of off and on, got %q", m)
		}
	}
	if len(s.Modes) == 0 {
		fail("BENCH_MODES", "no mode")
	}
	if d := s.E2ESearchDuration.D(); d < minE2ESearchDuration {
		fail("BENCH_E2E_SEARCH_DURATION", "want at least %s (the criterion reads the depth polls of a trial's last half, every %s), got %s",
			minE2ESearchDuration, e2eSearchPoll, d)
	}
	s.AcceptRuns, err = acceptPlans(s.Conns, str("BENCH_ACCEPT_C64", "json+key"))
	if err != nil {
		fail("BENCH_ACCEPT_C64", "%v", err)
	}
	if s.AcceptWorker != "run" && s.AcceptWorker != "stop" {
		fail("BENCH_ACCEPT_WORKER", "want run or stop, got %q", s.AcceptWorker)
	}
	if s.Phases != "all" && s.Phases != "accept" && s.Phases != "delivery" {
		fail("BENCH_PHASES", "want all, accept or delivery, got %q", s.Phases)
	}
	if !isLoopback(s.DBHost) {
		fail("DB_HOST", "the bench only targets this machine's loopback addresses, got %q", s.DBHost)
	}
	if v := getenv("REDIS_ADDR"); v != "" {
		// The bench runs its own redis-server; a REDIS_ADDR from the shell
		// would be overridden silently otherwise.
		fmt.Fprintf(os.Stderr, "bench: ignoring REDIS_ADDR=%s: the bench starts its own redis-server\n", v)
	}
	if len(errs) > 0 {
		return s, fmt.Errorf("bad settings:\n  %s", strings.Join(errs, "\n  "))
	}
	return s, nil
}

// minE2ESearchDuration is the shortest search trial: its last half holds
// at least the criterion's MinTailSamples polls with a margin.
const minE2ESearchDuration = 4 * time.Second

// acceptPlan is one accept run of a round: a variant at a connection count.
type acceptPlan struct {
	Variant     string `json:"variant"`
	Connections int    `json:"connections"`
}

// acceptPlans are every acceptVariant at conns[0], then the variants listed
// in wide (comma-separated names, "all", or "none") at each further count.
func acceptPlans(conns []int, wide string) ([]acceptPlan, error) {
	var plans []acceptPlan
	for _, v := range acceptVariants {
		plans = append(plans, acceptPlan{v, conns[0]})
	}
	var names []string
	switch wide {
	case "all":
		names = acceptVariants
	case "none":
	default:
		for v := range strings.SplitSeq(wide, ",") {
			v = strings.TrimSpace(v)
			if _, err := parseVariant(v); err != nil {
				return plans, err
			}
			if !contains(names, v) {
				names = append(names, v)
			}
		}
	}
	for _, c := range conns[1:] {
		for _, v := range acceptVariants { // in the variants' order
			if contains(names, v) {
				plans = append(plans, acceptPlan{v, c})
			}
		}
	}
	return plans, nil
}

// isLoopback reports whether host names this machine's loopback interface.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// jsonDuration is a time.Duration written as "10s" in the results.
type jsonDuration time.Duration

func (d jsonDuration) D() time.Duration { return time.Duration(d) }

func (d jsonDuration) String() string { return time.Duration(d).String() }

func (d jsonDuration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }
