// Package store keeps carteiro's messages in Postgres, the source of truth:
// every accepted message is a row in emails, and every state a delivery goes
// through is a conditional UPDATE on that row. The schema is applied by
// goose from migrations embedded in the binary.
package store
