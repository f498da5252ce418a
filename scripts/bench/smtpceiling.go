package main

import (
	"bytes"
	"context"
	"fmt"
	"net/smtp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	gomail "github.com/wneessen/go-mail"
)

// The phase 3 ceiling: a plain SMTP client, one connection per goroutine
// kept for the whole run, as many goroutines as the worker's
// WORKER_CONCURRENCY, sending the same number of messages of the same
// shape (headers as the worker writes them, the same subject and body
// sizes) into the same Mailpit. No database, no queue: what Mailpit and
// SMTP over loopback allow.

type smtpRun struct {
	// Tool is net/smtp (this program's client) or smtp-source.
	Tool        string  `json:"tool"`
	Command     string  `json:"command,omitempty"`
	Round       int     `json:"round"`
	Messages    int     `json:"messages"`
	Connections int     `json:"connections"`
	Seconds     float64 `json:"seconds"`
	Rate        float64 `json:"messages_per_s"`
	Errors      int64   `json:"errors"`
	InMailpit   int64   `json:"in_mailpit"`
	AvgBytes    int     `json:"avg_message_bytes"`
	// MailpitCPUUs is Mailpit's CPU time (user and system, /proc) during
	// the run, per message, in µs: the relay's own share of the machine.
	MailpitCPUUs float64 `json:"mailpit_cpu_us_per_message"`
}

const (
	mailFrom = "carteiro@carteiro.localhost"
	mailTo   = "contato@carteiro.localhost"
)

// composeMail builds message i as the worker's sender does (go-mail,
// UTF-8, quoted-printable, Message-ID <uuid@domain>, Date, User-Agent).
func composeMail(prefix string, i int) ([]byte, error) {
	msg := gomail.NewMsg(gomail.WithCharset(gomail.CharsetUTF8), gomail.WithEncoding(gomail.EncodingQP))
	if err := msg.From(mailFrom); err != nil {
		return nil, err
	}
	if err := msg.To(mailTo); err != nil {
		return nil, err
	}
	msg.Subject(subject(prefix, i))
	msg.SetMessageIDWithValue(uuid.NewString() + "@carteiro.localhost")
	msg.SetDate()
	msg.SetUserAgent("carteiro")
	msg.SetBodyString(gomail.TypeTextPlain, benchText)
	var b bytes.Buffer
	if _, err := msg.WriteTo(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func runSMTPCeiling(ctx context.Context, addr, prefix string, n, conns, round int) (smtpRun, error) {
	r := smtpRun{Round: round, Messages: n, Connections: conns, Tool: "net/smtp"}
	var next, errs, bytesSent atomic.Int64
	var firstErr error
	var once sync.Once
	fail := func(err error) {
		errs.Add(1)
		once.Do(func() { firstErr = err })
	}
	var wg sync.WaitGroup
	start := time.Now()
	for range conns {
		wg.Go(func() {
			c, err := smtp.Dial(addr)
			if err != nil {
				fail(err)
				return
			}
			defer c.Close()
			if err := c.Hello("bench"); err != nil {
				fail(err)
				return
			}
			for ctx.Err() == nil {
				i := int(next.Add(1))
				if i > n {
					break
				}
				body, err := composeMail(prefix, i)
				if err == nil {
					err = send(c, body)
				}
				if err != nil {
					fail(fmt.Errorf("message %d: %w", i, err))
					return
				}
				bytesSent.Add(int64(len(body)))
			}
			_ = c.Quit()
		})
	}
	wg.Wait()
	r.Seconds = time.Since(start).Seconds()
	r.Rate = float64(n) / r.Seconds
	r.Errors = errs.Load()
	r.AvgBytes = int(bytesSent.Load() / int64(max(n, 1)))
	if err := ctx.Err(); err != nil {
		return r, err
	}
	if firstErr != nil {
		return r, fmt.Errorf("smtp ceiling: %d error(s), the first: %w", r.Errors, firstErr)
	}
	return r, nil
}

// send is one SMTP transaction on an open connection.
func send(c *smtp.Client, body []byte) error {
	if err := c.Mail(mailFrom); err != nil {
		return err
	}
	if err := c.Rcpt(mailTo); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(body); err != nil {
		return err
	}
	return w.Close()
}
