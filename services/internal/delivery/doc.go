// Package delivery is the worker's engine: a pool that reads message ids
// from the stream, claims each row in Postgres, sends it by SMTP and
// records the outcome, retrying transient failures with backoff, and that
// shuts down cleanly by finishing the sends already in flight.
package delivery
