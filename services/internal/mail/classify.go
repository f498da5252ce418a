package mail

import (
	"errors"
	"fmt"
	"net/textproto"
)

// permanentError marks a failure that no retry can fix.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

func permanent(err error) error { return permanentError{err} }

// transactionError is a failure of one command of the mail transaction
// (MAIL, RCPT, DATA, the message data and its final dot): the relay's
// reply, or the connection failing while waiting for it.
type transactionError struct {
	command string
	err     error
}

func (e transactionError) Error() string { return fmt.Sprintf("smtp %s: %v", e.command, e.err) }
func (e transactionError) Unwrap() error { return e.err }

// Permanent reports whether retrying cannot help: the relay answered a
// command of the mail transaction with a 5xx reply (RFC 5321 §4.2.1), or
// the message itself could not be built. Everything else, a 4xx reply, a
// refused connection, a timeout, a failure while connecting (greeting,
// EHLO, STARTTLS, AUTH: usually configuration, fixed without touching the
// message), is transient.
func Permanent(err error) bool {
	if errors.As(err, new(permanentError)) {
		return true
	}
	var te transactionError
	if !errors.As(err, &te) {
		return false
	}
	code := ReplyCode(te.err)
	return code >= 500 && code < 600
}

// ReplyCode returns the SMTP reply code in err, or 0 when the relay never
// answered (connection errors, timeouts).
func ReplyCode(err error) int {
	var pe *textproto.Error
	if errors.As(err, &pe) {
		return pe.Code
	}
	return 0
}
