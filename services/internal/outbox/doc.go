// Package outbox moves committed messages from Postgres onto the Redis
// stream (the transactional outbox pattern). The api commits a row and
// wakes the relay; the relay publishes every due row and marks it
// published in the same transaction. A periodic sweep catches whatever a
// wake-up missed: rows committed by another process, retries coming due,
// and everything Redis lost.
package outbox
