package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/carteiro/carteiro/services/internal/config"
	"github.com/carteiro/carteiro/services/internal/mail"
	"github.com/carteiro/carteiro/services/internal/queue"
	"github.com/carteiro/carteiro/services/internal/store"
)

// Deps are what a pool works with.
type Deps struct {
	Store      *store.Store
	Queue      *queue.Queue
	Sender     *mail.Sender
	Log        *slog.Logger
	Config     config.Worker
	Tracer     trace.Tracer
	Propagator propagation.TextMapPropagator
	Metrics    *Metrics
}

// Timeouts of the pool's own database work.
const (
	// claimTimeout bounds a claim, so a Postgres that stopped answering
	// does not hold a sender for minutes; the entry stays pending and is
	// delivered again after the lease.
	claimTimeout = 5 * time.Second
	// outcomeTimeout bounds the recording of one outcome, retries
	// included. It is its own: an outcome is recorded even after the work
	// was cancelled (see Shutdown).
	outcomeTimeout = 15 * time.Second
	// outcomeGrace is the most of Shutdown's time kept, after the
	// connections of the sends in flight are closed, for their outcomes.
	outcomeGrace = 5 * time.Second
)

// Cancellation causes of an attempt's send.
var (
	errShutdown  = errors.New("the worker is shutting down")
	errClaimLost = errors.New("the claim was taken over by another attempt")
)

// Pool delivers messages with Config.Concurrency sends at once.
type Pool struct {
	d Deps
	// slots bounds the entries the pool holds: one token per message
	// being sent, or claimed and waiting for a sender (see claimAhead).
	// The readers read only as many entries as there are tokens.
	slots chan struct{}
	jobs  chan *job
	// outcomes carries the finished attempts to the recorder.
	outcomes chan *job
	// stop is closed by Shutdown: no more reading.
	stop     chan struct{}
	stopOnce sync.Once
	// work is the sends' context: hardStop cancels it, closing their
	// connections, when Shutdown's deadline is near.
	work     context.Context
	hardStop context.CancelCauseFunc
	// final ends the outcome writes still going at Shutdown's deadline.
	final       context.Context
	cancelFinal context.CancelFunc
	done        chan struct{}
	// inflight are the attempts being made, which the heartbeat renews.
	inflight inflight
	// lowWater is the number of claimed messages waiting for a sender at
	// or below which a reader claims what it holds (see acquire).
	lowWater int
}

// claimAhead is how many claimed messages may wait for a sender, at
// least: claims are made a batch ahead of the sends, so a sender
// finishing one message finds the next one claimed instead of waiting for
// a claim's commit. A commit costs a WAL flush, milliseconds to tens of
// them on a busy disk; the window must hold what the senders send
// meanwhile. The heartbeat renews waiting claims as it renews the sends.
const claimAhead = 64

// readers is how many read-and-claim loops run at once: one reads the
// stream while the other waits for its claim's commit.
const readers = 2

// NewPool returns a pool; Run starts it.
func NewPool(d Deps) *Pool {
	n := d.Config.Concurrency
	held := n + max(claimAhead, 3*n)
	p := &Pool{
		d:     d,
		slots: make(chan struct{}, held),
		jobs:  make(chan *job, held),
		// As many as the pool may hold: a sender never waits for the
		// recorder's commit either, and the batches grow with it.
		outcomes: make(chan *job, held),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		inflight: inflight{byEntry: map[string]*attempt{}},
		// Two messages a sender: the time a claim takes (a read, the
		// statement and its commit, milliseconds) is covered by what the
		// senders still have to send.
		lowWater: 2 * n,
	}
	p.work, p.hardStop = context.WithCancelCause(context.Background())
	p.final, p.cancelFinal = context.WithCancel(context.Background())
	for range held {
		p.slots <- struct{}{}
	}
	return p
}

// Run delivers until ctx is done or Shutdown is called, then waits for the
// sends in flight. In-flight work is not cancelled by ctx: only Shutdown's
// deadline stops it.
func (p *Pool) Run(ctx context.Context) error {
	defer close(p.done)
	defer p.cancelFinal()
	defer p.hardStop(errShutdown)
	read, stopReading := context.WithCancel(ctx)
	defer stopReading()
	go func() {
		select {
		case <-p.stop:
			stopReading()
		case <-read.Done():
		}
	}()

	if err := p.d.Queue.EnsureGroup(read); err != nil {
		p.d.Log.WarnContext(ctx, "worker: cannot create the consumer group yet", "err", err)
	}
	// The heartbeat outlives the reading: it renews the claims of the
	// sends in flight until the last one is recorded.
	beat, stopBeat := context.WithCancel(context.Background())
	var heart sync.WaitGroup
	heart.Go(func() { p.heartbeat(beat) })
	defer heart.Wait()
	defer stopBeat()

	var recorder sync.WaitGroup
	recorder.Go(p.recordLoop)
	var senders sync.WaitGroup
	for range p.d.Config.Concurrency {
		senders.Go(func() {
			for j := range p.jobs {
				p.send(j)
				p.slots <- struct{}{}
			}
		})
	}
	var feeders sync.WaitGroup
	for range readers {
		feeders.Go(func() { p.readLoop(read) })
	}
	feeders.Go(func() { p.reclaimLoop(read) })
	feeders.Wait()
	close(p.jobs)
	senders.Wait()
	close(p.outcomes)
	recorder.Wait()
	return nil
}

// Shutdown stops reading and waits for the sends in flight and their
// outcomes, until ctx is done. A read already waiting on Redis (at most a
// second) may still return entries; they are delivered too rather than
// left pending.
//
// When ctx has a deadline, a quarter of the time left (at most 5 s) before
// it the connections of the sends still in flight are closed: each such
// attempt is released (its message queued again at once, the attempt not
// counted) or, if the relay's 250 arrived first, recorded sent. Outcome
// writes use their own context, not the cancelled work's. At the deadline
// whatever is left is cancelled (those messages are recovered after the
// lease) and Shutdown returns an error; it also returns one, after
// everything finished, when sends had to be interrupted.
func (p *Pool) Shutdown(ctx context.Context) error {
	p.stopOnce.Do(func() { close(p.stop) })
	var hard <-chan time.Time
	var grace time.Duration
	if deadline, ok := ctx.Deadline(); ok {
		left := time.Until(deadline)
		grace = min(left/4, outcomeGrace)
		t := time.NewTimer(left - grace)
		defer t.Stop()
		hard = t.C
	}
	select {
	case <-p.done:
		return nil
	case <-hard:
	case <-ctx.Done():
	}
	n := p.inflight.count()
	p.d.Log.WarnContext(ctx, "worker: shutdown deadline near: closing the connections of the sends in flight; they will be sent again",
		"in_flight", n, "outcome_grace", grace)
	p.hardStop(errShutdown)
	select {
	case <-p.done:
		return fmt.Errorf("%d send(s) interrupted %s before the shutdown deadline", n, grace)
	case <-ctx.Done():
		p.cancelFinal()
		<-p.done
		return ctx.Err()
	}
}

// acquire takes up to want idle slots, waiting for the first one. While
// the senders still have more than lowWater claimed messages queued, it
// waits for half of want, so that the next claim is a batch rather than a
// row: every claim costs a commit, and taking slots one by one as senders
// free them would make claims of one row each. Once the queue is down to
// lowWater it returns what it holds, so that the claim's round trips and
// commit overlap the sends of the messages still queued: the readers
// acquire at once and share the slots freed, so waiting for half of want
// each let the queue run dry before either claimed, and the senders then
// waited for the claim (an execution trace of a drain: 1.6 to 1.8 % of
// their time, about 80 such waits a second).
func (p *Pool) acquire(ctx context.Context, want int) int {
	select {
	case <-p.slots:
	case <-ctx.Done():
		return 0
	}
	n := 1
	for n < want {
		select {
		case <-p.slots:
			n++
			continue
		default:
		}
		if len(p.jobs) <= p.lowWater || n >= want/2 {
			return n
		}
		select {
		case <-p.slots:
			n++
		case <-ctx.Done():
			return n
		}
	}
	return n
}

func (p *Pool) release(n int) {
	for range n {
		p.slots <- struct{}{}
	}
}

func (p *Pool) readLoop(ctx context.Context) {
	for ctx.Err() == nil {
		n := p.acquire(ctx, cap(p.slots))
		if n == 0 {
			return
		}
		entries, err := p.d.Queue.Read(ctx, p.d.Config.Name, n, time.Second)
		if err != nil {
			p.release(n)
			if ctx.Err() == nil {
				p.d.Log.WarnContext(ctx, "worker: reading the stream failed, retrying", "err", err)
				sleep(ctx, time.Second)
			}
			continue
		}
		p.release(n - len(entries))
		p.dispatch(entries)
	}
}

// reclaimLoop recovers the work of workers that stopped: claims whose
// lease expired in Postgres, and stream entries nobody renewed for a
// lease. A live send renews both (heartbeat), so neither is ever taken
// from it.
func (p *Pool) reclaimLoop(ctx context.Context) {
	every := p.d.Config.Lease / 2
	cursor := "0-0"
	for sleep(ctx, every) {
		c, cancel := context.WithTimeout(ctx, every)
		released, dead, err := p.d.Store.ReleaseExpired(c, p.d.Config.MaxAttempts)
		cancel()
		switch {
		case err != nil:
			p.d.Log.WarnContext(ctx, "worker: releasing expired claims failed", "err", err)
		case released > 0:
			p.d.Log.WarnContext(ctx, "worker: released messages whose lease expired (their worker stopped or lost Postgres); another attempt will take them over", "count", released)
		}
		if dead > 0 {
			p.d.Log.ErrorContext(ctx, "worker: recorded dead: the lease of their last allowed attempt expired", "count", dead, "max_attempts", p.d.Config.MaxAttempts)
		}
		for ctx.Err() == nil {
			n := p.acquire(ctx, p.d.Config.Concurrency)
			if n == 0 {
				return
			}
			entries, next, err := p.d.Queue.Reclaim(ctx, p.d.Config.Name, p.d.Config.Lease, cursor, n)
			p.release(n - len(entries))
			if err != nil {
				p.d.Log.WarnContext(ctx, "worker: reclaiming pending entries failed", "err", err)
				break
			}
			for _, e := range entries {
				p.d.Log.WarnContext(ctx, "worker: took over a stream entry nobody renewed for a lease",
					"message_id", e.MessageID, "stream_id", e.StreamID, "deliveries", e.Deliveries)
			}
			p.dispatch(entries)
			cursor = next
			if cursor == "0-0" {
				break
			}
		}
	}
}

// sleep waits d or until ctx is done; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
