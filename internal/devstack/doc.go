// Package devstack runs carteiro's native stack: Mailpit, the api and
// worker instances, nginx and, with observability on, Jaeger, the
// OpenTelemetry Collector (the services' spans go through it: span
// metrics, tail sampling), Prometheus, Alertmanager and the nginx,
// Postgres and Redis exporters, as local processes against the machine's
// Postgres and Redis. `make dev`
// (cmd/devstack) uses it, and so do the end-to-end, browser and
// fault-injection suites (through services/internal/stacktest) and `make
// bench`, so the stack the tests prove is the one developers run.
//
// A stack is a Config (Load reads it from an environment, with the knobs
// and defaults the README's "Configuration" section lists) and a list of
// Components: each is data (name, program, arguments, environment, listen
// addresses, readiness URL, dependencies, an optional Prepare step), so a
// new process is one more entry. Stack.Up starts what is not running, in
// dependency order, each once its dependencies are ready, and waits until
// it is ready; Stack.Down stops everything in the reverse order;
// Stack.Status prints one line per component.
//
// Each component runs under a supervisor: the devstack binary itself,
// started as `devstack supervise DIR NAME -- PROGRAM ARGS...` in a session
// of its own (Supervise), so it outlives the command that started it. The
// supervisor starts the program, records it, waits for it and records how
// it ended. Its folder (DEV_DIR, .dev/ by default) holds, per component:
//
//	<name>.log   stdout and stderr of every start, each headed by a line
//	<name>.pid   the program's pid: the process to signal
//	<name>.proc  the identity (pid and start time) of it and its supervisor
//	<name>.url   the URL that answers once it is ready
//	<name>.exit  its exit status once it ended: the code, 128+N after signal N
//
// and devstack.lock (one up or down at a time), and the rendered
// configurations: nginx/ (nginx/*.template rendered by
// package nginxtemplate, the official image's rules; also nginx's pid file,
// temporary folders and logs) and, with observability, prometheus.yml,
// prometheus-data/, prometheus-rules/ (the rules with scaled windows, for
// tests: PROMETHEUS_RULES_WINDOW_SCALE), alertmanager.yml,
// alertmanager-data/ and redis-exporter-passwords.json (0600).
//
// A process is only ever signalled if its pid still has the start time the
// supervisor recorded (Process): a pid file left by a crash, whose pid the
// system gave to another program since, is removed, never acted on.
//
// Linux only: identities come from /proc.
package devstack
