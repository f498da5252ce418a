package main

import (
	"context"
	"fmt"
	"time"
)

// Phase 3, delivery: BENCH_N messages are queued with the worker stopped,
// by one direct INSERT (each row queued and unpublished, with a
// traceparent sampled only with observability on, as the api would have
// stored it), and the api's outbox relay
// puts them on the Redis stream. Once the outbox is empty and Mailpit
// cleared, the worker is started; the run lasts from the worker process's
// start (from /proc, so its start-up counts) to the last row's sent_at.

type deliveryRun struct {
	Round         int     `json:"round"`
	Messages      int     `json:"messages"`
	Concurrency   int     `json:"worker_concurrency"`
	QueueSeconds  float64 `json:"queue_insert_s"`
	PublishS      float64 `json:"outbox_publish_s"`
	Seconds       float64 `json:"seconds"`
	Rate          float64 `json:"messages_per_s"`
	WorkerReadyS  float64 `json:"worker_ready_s"`
	InMailpit     int64   `json:"in_mailpit"`
	Duplicates    int64   `json:"duplicates"`
	WorkerStarted string  `json:"worker_started"`
	LastSent      string  `json:"last_sent"`
	// ProfileErrors are what went wrong fetching the profiles
	// (BENCH_PROFILE).
	ProfileErrors []string `json:"profile_errors,omitempty"`
	// PerMessage is the stores' work per message delivered (see work.go).
	PerMessage *storeWork `json:"per_message,omitempty"`
	// EmailsRows is the number of rows in emails when the drain starts
	// (these N included): how large the table the drain works on is.
	EmailsRows int64 `json:"emails_rows"`
}

// prepareDelivery stops the worker, queues n messages and waits until the
// relay has published them all. The worker stays stopped.
func prepareDelivery(ctx context.Context, st *stack, db *benchDB, prefix string, n int) (deliveryRun, error) {
	r := deliveryRun{Messages: n}
	if len(st.pids("worker")) > 0 {
		if err := st.stopWorkers(ctx); err != nil {
			return r, err
		}
	}
	t := time.Now()
	if err := db.queueDirect(ctx, prefix, n, st.obs); err != nil {
		return r, err
	}
	r.QueueSeconds = time.Since(t).Seconds()
	pub, err := db.waitPublished(ctx, 10*time.Minute)
	if err != nil {
		return r, err
	}
	r.PublishS = pub.Seconds()
	return r, nil
}

// runDelivery starts the worker and times the drain of the n messages
// prepareDelivery queued.
func runDelivery(ctx context.Context, st *stack, db *benchDB, mp *mailpit, r deliveryRun, prefix string, timeout time.Duration, profile func() func() []string) (deliveryRun, error) {
	if err := mp.Clear(ctx); err != nil {
		return r, err
	}
	t := time.Now()
	if err := st.up(ctx); err != nil {
		return r, err
	}
	if profile != nil {
		done := profile()
		defer func() { r.ProfileErrors = done() }()
	}
	r.WorkerReadyS = time.Since(t).Seconds()
	procs := st.procs("worker")
	if len(procs) == 0 {
		return r, fmt.Errorf("no worker after the stack's up")
	}
	var started time.Time
	for _, p := range procs {
		s, err := p.StartTime()
		if err != nil {
			return r, err
		}
		if started.IsZero() || s.Before(started) {
			started = s
		}
	}
	d, err := db.waitSent(ctx, prefix, int64(r.Messages), timeout)
	if err != nil {
		return r, err
	}
	r.WorkerStarted = started.UTC().Format(time.RFC3339Nano)
	r.LastSent = d.LastSent.UTC().Format(time.RFC3339Nano)
	r.Seconds = d.LastSent.Sub(started).Seconds()
	if r.Seconds > 0 {
		r.Rate = float64(r.Messages) / r.Seconds
	}
	got, err := mp.expect(ctx, int64(r.Messages))
	r.InMailpit = got
	r.Duplicates = max(0, got-int64(r.Messages))
	return r, err
}
