// Package deploy holds the checks that keep carteiro's deployment files honest.
//
// It has no production code: its tests load docker-compose.yml (alone and with
// docker-compose.observability.yml) through compose-go, the same loader the
// docker compose CLI uses, together with the repository's .env, and assert the
// rules the deployment promises: a single published edge port, internal-only
// networks for the database and the queue, pinned images, dropped
// capabilities, read-only root filesystems, non-root users, healthchecks,
// healthy-ordered start-up and secrets that are files, never environment values.
// They also read services/Dockerfile so that the built images stay in step.
//
// The observability files are checked here too: both Prometheus
// configurations and the alert rules with promtool (check config, check
// rules, and the rules' unit tests), the alert rules' shape and the contract
// metric names, the Grafana provisioning (fixed datasource uids) and every
// dashboard's datasource references and queries, and the nginx templates
// (the native and otel tracing flavours differ by one include; stub_status
// answers only the allowed address, with the machine's nginx).
//
// The k6 load tests (scripts/k6) are checked with node, k6 not being
// installable: they parse as ES modules, and, evaluated against stand-ins
// for k6's modules and a fake of the API (testdata/k6), their thresholds
// name metrics they emit and their requests carry the headers they must.
// The k6 compose service and Grafana dashboard are checked against them.
//
// The Makefile's FUZZ_TARGETS are checked against the repository's fuzz
// functions: `make fuzz` runs every one.
//
// No Docker engine is needed: nothing is built or started but a private
// nginx on free loopback ports. promtool, nginx and node missing: a skip, or
// a failure with CI=true.
package deploy
