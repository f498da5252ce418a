package delivery

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/carteiro/carteiro/services/internal/queue"
	"github.com/carteiro/carteiro/services/internal/store"
)

// attempt is one delivery attempt in flight: its stream entry, its claim,
// and how to stop its send.
type attempt struct {
	entry queue.Entry
	lease store.Lease
	stop  context.CancelCauseFunc
	// recording is set once the attempt writes its outcome: from then on
	// a claim that is no longer sending is the attempt's own doing.
	recording atomic.Bool
}

// inflight is the set of attempts a pool is making.
type inflight struct {
	mu      sync.Mutex
	byEntry map[string]*attempt
}

func (f *inflight) add(a *attempt) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.byEntry[a.entry.StreamID] = a
}

func (f *inflight) remove(a *attempt) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.byEntry, a.entry.StreamID)
}

func (f *inflight) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.byEntry)
}

func (f *inflight) snapshot() []*attempt {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]*attempt, 0, len(f.byEntry))
	for _, a := range f.byEntry {
		out = append(out, a)
	}
	return out
}

// heartbeat renews the claims of the sends in flight every lease/3, in
// both places that could otherwise take them over: the rows' leases in
// Postgres, and the stream entries' idle time in Redis. One statement and
// one command per beat cover every attempt, however many there are. A
// claim found taken over (its lease expired while Postgres was out of
// reach, and another worker claimed the row) stops its send.
func (p *Pool) heartbeat(ctx context.Context) {
	every := p.d.Config.Lease / 3
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p.renew(ctx, every)
	}
}

func (p *Pool) renew(ctx context.Context, budget time.Duration) {
	attempts := p.inflight.snapshot()
	if len(attempts) == 0 {
		return
	}
	leases := make([]store.Lease, len(attempts))
	ids := make([]string, len(attempts))
	byID := make(map[string]*attempt, len(attempts))
	for i, a := range attempts {
		leases[i], ids[i], byID[a.lease.ID] = a.lease, a.entry.StreamID, a
	}
	// Each store on its own budget, at once: a Postgres that stopped
	// answering must not keep the stream entries from being renewed.
	var wg sync.WaitGroup
	wg.Go(func() {
		ctx, cancel := context.WithTimeout(ctx, budget)
		defer cancel()
		if _, err := p.d.Queue.Touch(ctx, p.d.Config.Name, ids...); err != nil {
			p.d.Metrics.renewFailures.Inc()
			p.d.Log.WarnContext(ctx, "worker: renewing the stream entries in flight failed", "in_flight", len(ids), "err", err)
		}
	})
	defer wg.Wait()
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	lost, err := p.d.Store.RenewLeases(ctx, leases, p.d.Config.Lease)
	if err != nil {
		p.d.Metrics.renewFailures.Inc()
		// The leases run on; an attempt whose lease ends before a
		// renewal succeeds may be taken over, and its outcome write is
		// then refused (fencing).
		p.d.Log.WarnContext(ctx, "worker: renewing the leases of the sends in flight failed", "in_flight", len(attempts), "err", err)
	}
	for _, l := range lost {
		a := byID[l.ID]
		if a.recording.Load() {
			continue // finished by its own outcome write
		}
		p.d.Metrics.lost.Inc()
		p.d.Log.WarnContext(ctx, "worker: claim lost while sending: another attempt holds the message; stopping this one",
			"message_id", l.ID, "stream_id", a.entry.StreamID, "token", l.Token)
		a.stop(errClaimLost)
	}
}
