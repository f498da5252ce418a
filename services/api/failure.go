package main

import (
	"time"

	"github.com/carteiro/carteiro/services/internal/message"
	"github.com/carteiro/carteiro/services/internal/store"
)

// Failure kinds of the public status view.
const (
	// failureTemporary: the last attempt failed and another is scheduled
	// (status failed: a 4xx SMTP reply, a timeout, a refused connection).
	failureTemporary = "temporary"
	// failurePermanent: no attempt follows (status dead: a 5xx SMTP reply,
	// or the attempts ran out) until an operator reprocesses the message.
	failurePermanent = "permanent"
)

// failureView is the public account of a failed delivery: its kind, a
// pt-BR label for people, and for a temporary failure when the next
// attempt is due. The relay's reply itself stays in Postgres (last_error),
// the worker's log and the delivery span: it names internal hosts and
// addresses, and the status view is public to anyone holding the id.
type failureView struct {
	Kind          string     `json:"kind"`  // "temporary" or "permanent"
	Label         string     `json:"label"` // "falha temporária" or "falha permanente"
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
}

// failureOf returns the public view of e's failure, or nil when e is not
// failed or dead. A message queued again (by a shutdown or a reprocess)
// keeps its last_error in Postgres but shows no failure: it is on its way.
func failureOf(e store.Email) *failureView {
	switch e.Status {
	case message.StatusFailed:
		return &failureView{Kind: failureTemporary, Label: "falha temporária", NextAttemptAt: e.NextAttemptAt}
	case message.StatusDead:
		return &failureView{Kind: failurePermanent, Label: "falha permanente"}
	}
	return nil
}
