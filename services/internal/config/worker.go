package config

import (
	"fmt"
	"net/mail"
	"os"
	"time"
)

// Worker is the configuration of the worker process.
type Worker struct {
	LogLevel string
	// InternalAddr serves health and metrics.
	InternalAddr string
	Postgres     Postgres
	Redis        Redis
	SMTP         SMTP
	// From and To are fixed by configuration: the form is a contact form,
	// never an open relay.
	From string
	To   string
	// Name is this process's consumer name in the group.
	Name string
	// Concurrency is the number of messages sent at once.
	Concurrency int
	// Lease is how long a claim lasts without being renewed: the time to
	// notice that a worker died (or lost Postgres and Redis) before
	// another takes its messages over. A live send renews its claim every
	// Lease/3, however long the relay takes, so Lease does not bound a
	// send.
	Lease time.Duration
	// MaxDeliveries is how many times one stream entry is handed to a
	// worker (its delivery count in the consumer group) before it is
	// treated as poison: its message recorded dead and the entry
	// acknowledged. Heartbeats do not count.
	MaxDeliveries int
	// OutcomeDelay is how long the outcome recorder waits, after an
	// outcome arrives, for the other senders' outcomes to join its batch
	// (one statement, one commit, one Redis round trip for all): it stops
	// waiting as soon as Concurrency outcomes are in. 0 writes every
	// outcome as soon as it arrives, with those already waiting.
	OutcomeDelay time.Duration
	// ShutdownTimeout bounds how long SIGTERM waits for in-flight sends.
	ShutdownTimeout time.Duration
	// MaxAttempts is the number of sends tried before a message is dead.
	MaxAttempts int
	// RetryBaseDelay and RetryMaxDelay shape the exponential backoff.
	RetryBaseDelay time.Duration
	RetryMaxDelay  time.Duration
	// PProf serves /debug/pprof/ on the internal port.
	PProf bool
}

// SMTP says how to reach the mail relay.
type SMTP struct {
	Host     string
	Port     int
	Username string
	Password string
	// TLS is none, starttls (required) or tls (implicit).
	TLS string
	// Timeout bounds the connection and each wait for a reply: the
	// greeting, EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA and each block of
	// message data (RFC 5321 §4.5.3.2), never the whole transaction.
	Timeout time.Duration
	// DataTimeout bounds the wait for the reply to the final dot, when
	// the relay processes the message (RFC 5321 §4.5.3.2.6: 10 minutes).
	// A timeout here may leave a message the relay did accept recorded
	// as failed and sent again (RFC 1047), so it is long.
	DataTimeout time.Duration
}

// maxOutcomeDelay bounds WORKER_OUTCOME_DELAY: the wait is for outcomes
// of sends already finishing, milliseconds apart under load.
const maxOutcomeDelay = 100 * time.Millisecond

// LoadWorker reads the worker's configuration through getenv.
func LoadWorker(getenv func(string) string) (Worker, error) {
	r := &reader{getenv: getenv}
	host, _ := os.Hostname()
	c := Worker{
		LogLevel:     r.oneOf("LOG_LEVEL", "info", "debug", "info", "warn", "error"),
		InternalAddr: r.addr("INTERNAL_ADDR", "127.0.0.1:9102", 0),
		Postgres:     readPostgres(r),
		Redis:        readRedis(r),
		SMTP: SMTP{
			Host:     r.host("SMTP_HOST", "127.0.0.1"),
			Port:     r.int("SMTP_PORT", 1025, 1, 65535),
			Username: r.string("SMTP_USERNAME", ""),
			Password: r.secret("SMTP_PASSWORD"),
			TLS:      r.oneOf("SMTP_TLS", "none", "none", "starttls", "tls"),
			// RFC 5321 asks 2 to 5 minutes per reply of a relay on the
			// Internet; carteiro talks to its own relay, where a reply a
			// minute late means trouble, and a timeout before the final
			// dot only costs a retry.
			Timeout:     r.duration("SMTP_TIMEOUT", time.Minute, 100*time.Millisecond),
			DataTimeout: r.duration("SMTP_DATA_TIMEOUT", 10*time.Minute, 100*time.Millisecond),
		},
		From:            address(r, "MAIL_FROM", "carteiro@carteiro.localhost"),
		To:              address(r, "MAIL_TO", "contato@carteiro.localhost"),
		Name:            r.string("WORKER_NAME", fmt.Sprintf("%s-%d", host, os.Getpid())),
		Concurrency:     r.int("WORKER_CONCURRENCY", 8, 1, 256),
		Lease:           r.duration("WORKER_LEASE", 30*time.Second, time.Second),
		MaxDeliveries:   r.int("WORKER_MAX_DELIVERIES", 5, 1, 1000),
		OutcomeDelay:    r.duration("WORKER_OUTCOME_DELAY", 5*time.Millisecond, 0),
		ShutdownTimeout: r.duration("WORKER_SHUTDOWN_TIMEOUT", 20*time.Second, 0),
		MaxAttempts:     r.int("MAX_ATTEMPTS", 5, 1, 100),
		RetryBaseDelay:  r.duration("RETRY_BASE_DELAY", 2*time.Second, time.Millisecond),
		RetryMaxDelay:   r.duration("RETRY_MAX_DELAY", 5*time.Minute, time.Millisecond),
		PProf:           r.bool("PPROF", false),
	}
	if c.RetryMaxDelay < c.RetryBaseDelay {
		r.fail("RETRY_MAX_DELAY", "%s is shorter than RETRY_BASE_DELAY %s", c.RetryMaxDelay, c.RetryBaseDelay)
	}
	if c.OutcomeDelay > maxOutcomeDelay {
		r.fail("WORKER_OUTCOME_DELAY", "%s is longer than %s: each outcome, and the acknowledgement of its entry, would wait that long", c.OutcomeDelay, maxOutcomeDelay)
	}
	if c.SMTP.DataTimeout < c.SMTP.Timeout {
		r.fail("SMTP_DATA_TIMEOUT", "%s is shorter than SMTP_TIMEOUT %s", c.SMTP.DataTimeout, c.SMTP.Timeout)
	}
	return c, r.err()
}

func address(r *reader, name, def string) string {
	v := r.string(name, def)
	_, err := mail.ParseAddress(v)
	if err != nil {
		r.fail(name, "%q is not an e-mail address", v)
		return def
	}
	return v
}
