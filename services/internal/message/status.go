package message

// Status is where a message is on its way to the inbox.
type Status string

// The statuses a message moves through. queued → sending → sent is the
// normal path; failed is a transient failure awaiting a retry; dead is final
// until someone reprocesses it.
const (
	StatusQueued  Status = "queued"
	StatusSending Status = "sending"
	StatusSent    Status = "sent"
	StatusFailed  Status = "failed"
	StatusDead    Status = "dead"
)

// Final reports whether no more delivery attempts will be made on their own.
func (s Status) Final() bool { return s == StatusSent || s == StatusDead }
