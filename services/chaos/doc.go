// Package chaos is carteiro's fault-injection suite: it starts the native
// stack with package devstack (real nginx, api, worker, Postgres, Redis, and
// Mailpit or an in-process SMTP server whose replies a test scripts), posts
// a known number of messages through nginx, breaks something for real
// (kill -9 a worker inside DATA, flush or restart Redis, stop Postgres,
// make the relay answer 451 or 550, SIGTERM a worker under load, restart one
// of two apis under load, a relay that answers every reply slowly, with the
// worker killed or stopped in the middle), lets the system recover, and counts: messages accepted (2xx), rows by status, and
// mails in the inbox by Message-ID. Every scenario prints one line
//
//	<scenario>: accepted=N sent=N lost=0 duplicates=K
//
// and fails on any loss, or on duplicates beyond what its fault explains.
// A scenario that stops Postgres or Redis runs its own private server on a
// free port, never the machine's shared one.
//
// Sizes: CHAOS_SCALE unset (or short) is the version `make test` runs;
// CHAOS_SCALE=full (`make chaos`) posts ten times more, 10,000 messages
// through two apis and three workers. SOAK_DURATION (default 1m) and
// SOAK_RATE (messages per second, default 20) shape the soak scenario,
// which `make soak DURATION=10m` runs alone. Figures (latencies, rates,
// RSS) are printed, never asserted. With CHAOS_REPORT set, the scenario
// lines and figures are also appended to that file (go test shows a passing
// package's output only with -v; the Makefile prints the file).
//
// The package has tests only.
package chaos
