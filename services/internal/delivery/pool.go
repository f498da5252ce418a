package delivery

import (
	"context"
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

// Pool delivers messages with Config.Concurrency sends at once.
type Pool struct {
	d Deps
	// slots holds one token per idle sender; the reader only reads as many
	// entries as there are idle senders, so nothing waits in memory.
	slots chan struct{}
	jobs  chan queue.Entry
	// stop is closed by Shutdown: no more reading.
	stop     chan struct{}
	stopOnce sync.Once
	// hardStop cancels the in-flight work when Shutdown's deadline passes.
	hardStop context.CancelFunc
	done     chan struct{}
}

// NewPool returns a pool; Run starts it.
func NewPool(d Deps) *Pool {
	n := d.Config.Concurrency
	p := &Pool{
		d:     d,
		slots: make(chan struct{}, n),
		jobs:  make(chan queue.Entry, n),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	for range n {
		p.slots <- struct{}{}
	}
	return p
}

// Run delivers until ctx is done or Shutdown is called, then waits for the
// sends in flight. In-flight work is not cancelled by ctx: only Shutdown's
// deadline stops it.
func (p *Pool) Run(ctx context.Context) error {
	defer close(p.done)
	work, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.hardStop = cancel
	defer cancel()
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
	var senders sync.WaitGroup
	for range p.d.Config.Concurrency {
		senders.Go(func() {
			for e := range p.jobs {
				p.handle(work, e)
				p.slots <- struct{}{}
			}
		})
	}
	var feeders sync.WaitGroup
	feeders.Go(func() { p.readLoop(read) })
	feeders.Go(func() { p.reclaimLoop(read) })
	feeders.Wait()
	close(p.jobs)
	senders.Wait()
	return nil
}

// Shutdown stops reading and waits for the sends in flight, until ctx is
// done. A read already waiting on Redis (at most a second) may still
// return entries; they are delivered too rather than left pending. When ctx is
// done, what is left is cancelled (those messages stay pending and are
// recovered after the lease) and Shutdown returns ctx's error.
func (p *Pool) Shutdown(ctx context.Context) error {
	p.stopOnce.Do(func() { close(p.stop) })
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		if p.hardStop != nil {
			p.hardStop()
		}
		<-p.done
		return ctx.Err()
	}
}

// acquire takes up to want idle slots, waiting for the first one.
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
		default:
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
		n := p.acquire(ctx, p.d.Config.Concurrency)
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
		for _, e := range entries {
			p.jobs <- e
		}
	}
}

// reclaimLoop recovers the work of crashed workers: stream entries left
// pending past the lease, and rows left in sending past the lease.
func (p *Pool) reclaimLoop(ctx context.Context) {
	every := p.d.Config.Lease / 2
	cursor := "0-0"
	for sleep(ctx, every) {
		if n, err := p.d.Store.ReleaseExpired(ctx, p.d.Config.Lease); err != nil {
			p.d.Log.WarnContext(ctx, "worker: releasing expired leases failed", "err", err)
		} else if n > 0 {
			p.d.Log.WarnContext(ctx, "worker: released messages whose worker vanished", "count", n)
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
				p.d.Log.InfoContext(ctx, "worker: took over an abandoned entry", "message_id", e.MessageID)
				p.jobs <- e
			}
			cursor = next
			if cursor == "0-0" || len(entries) == 0 {
				cursor = "0-0"
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
