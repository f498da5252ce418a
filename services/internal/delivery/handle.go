package delivery

import (
	"context"
	"time"

	"github.com/carteiro/carteiro/services/internal/mail"
	"github.com/carteiro/carteiro/services/internal/queue"
)

// handle takes one stream entry through one delivery attempt. The entry is
// acknowledged once the outcome is recorded in Postgres; if recording
// fails the entry stays pending and is recovered after the lease.
func (p *Pool) handle(ctx context.Context, e queue.Entry) {
	log := p.d.Log.With("message_id", e.MessageID, "stream_id", e.StreamID)
	if e.MessageID == "" {
		log.WarnContext(ctx, "worker: dropping a stream entry without a message id")
		p.ack(ctx, e)
		return
	}
	email, ok, err := p.d.Store.Claim(ctx, e.MessageID, p.d.Sender.MessageID(e.MessageID), p.d.Config.Lease)
	if err != nil {
		log.WarnContext(ctx, "worker: claim failed, leaving the entry pending", "err", err)
		return
	}
	if !ok {
		// Already sent, dead, not due yet, or in someone else's hands.
		p.ack(ctx, e)
		return
	}
	log = log.With("attempt", email.Attempts)
	_, sendErr := p.d.Sender.Send(ctx, mail.Message{
		ID: email.ID, Assunto: email.Assunto, Mensagem: email.Mensagem, Date: email.CreatedAt,
	})
	var record func(context.Context) error
	switch {
	case sendErr == nil:
		log.InfoContext(ctx, "worker: sent")
		record = func(ctx context.Context) error { return p.d.Store.MarkSent(ctx, email.ID) }
	case mail.Permanent(sendErr) || email.Attempts >= p.d.Config.MaxAttempts:
		log.WarnContext(ctx, "worker: giving up", "err", sendErr, "permanent", mail.Permanent(sendErr))
		record = func(ctx context.Context) error { return p.d.Store.MarkDead(ctx, email.ID, sendErr.Error()) }
	default:
		wait := Backoff(email.Attempts, p.d.Config.RetryBaseDelay, p.d.Config.RetryMaxDelay, nil)
		log.WarnContext(ctx, "worker: will retry", "err", sendErr, "in", wait)
		next := time.Now().Add(wait)
		record = func(ctx context.Context) error { return p.d.Store.MarkFailed(ctx, email.ID, sendErr.Error(), next) }
	}
	if err := retry(ctx, record); err != nil {
		log.ErrorContext(ctx, "worker: could not record the outcome, leaving the entry pending", "err", err)
		return
	}
	p.ack(ctx, e)
}

func (p *Pool) ack(ctx context.Context, e queue.Entry) {
	if err := p.d.Queue.Ack(ctx, e.StreamID); err != nil {
		// The entry stays pending; after the lease it is reclaimed and the
		// claim finds the row finished, so it is only acknowledged then.
		p.d.Log.WarnContext(ctx, "worker: ack failed", "stream_id", e.StreamID, "err", err)
	}
}

// retry runs f up to five times, a little longer apart each time, so that
// a short database hiccup does not turn a finished send into a repeat.
func retry(ctx context.Context, f func(context.Context) error) error {
	var err error
	for i := range 5 {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = f(c)
		cancel()
		if err == nil || !sleep(ctx, time.Duration(i+1)*200*time.Millisecond) {
			return err
		}
	}
	return err
}
