package mail

import (
	"errors"

	gomail "github.com/wneessen/go-mail"
)

// permanentError marks a failure that no retry can fix.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

func permanent(err error) error { return permanentError{err} }

// Permanent reports whether retrying cannot help: the relay answered with a
// 5xx reply, or the message itself could not be built. Everything else, a
// 4xx reply, a refused connection, a timeout, is transient.
func Permanent(err error) bool {
	if errors.As(err, new(permanentError)) {
		return true
	}
	var se *gomail.SendError
	if errors.As(err, &se) {
		return se.ErrorCode() >= 500 && se.ErrorCode() < 600
	}
	return false
}

// ReplyCode returns the SMTP reply code in err, or 0 when the relay never
// answered (connection errors, timeouts).
func ReplyCode(err error) int {
	var se *gomail.SendError
	if errors.As(err, &se) {
		return se.ErrorCode()
	}
	return 0
}
