// Package delivery is the worker's engine: a pool that reads message ids
// from the stream, claims each row in Postgres (a fencing token and a
// lease), sends it by SMTP while a heartbeat renews the claim in Postgres
// and the entry in Redis, records the outcome under the token (a stale
// attempt's write is refused), retries transient failures with backoff,
// ends poison entries, takes over the work of workers that died, and
// shuts down cleanly by finishing the sends already in flight.
package delivery
