package queue

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Entry is one message handed to the workers.
type Entry struct {
	// StreamID is Redis's id of the entry; empty until the entry is read.
	StreamID string
	// MessageID is the id of the row in Postgres.
	MessageID string
	// Carrier holds propagation headers (traceparent, tracestate).
	Carrier map[string]string
	// Deliveries is how many times the group has handed this entry to a
	// consumer, this time included: 1 when read fresh, more when taken
	// over after its consumer fell silent. Renewals (Touch) do not count.
	Deliveries int64
}

// fieldID is the stream field that holds the message id; every other field
// is a propagation header.
const fieldID = "id"

// Queue is a Redis stream plus the consumer group that shares it.
type Queue struct {
	rdb    redis.UniversalClient
	stream string
	group  string
}

// New returns the queue on stream, read by group.
func New(rdb redis.UniversalClient, stream, group string) *Queue {
	return &Queue{rdb: rdb, stream: stream, group: group}
}

// Stream returns the stream's key.
func (q *Queue) Stream() string { return q.stream }

// Destination is the stream's short name for span names: "emails" for
// "carteiro:emails".
func (q *Queue) Destination() string { return q.stream[strings.LastIndexByte(q.stream, ':')+1:] }

// Add appends one entry to the stream.
func (q *Queue) Add(ctx context.Context, e Entry) error {
	if err := q.rdb.XAdd(ctx, q.addArgs(e)).Err(); err != nil {
		return fmt.Errorf("add to %s: %w", q.stream, err)
	}
	return nil
}

// AddBatch appends entries to the stream in one round trip (a pipeline of
// XADDs, not a transaction). It returns nil when every entry was added;
// otherwise the error names how many were not, and added[i] tells which
// were (when Redis answered at all).
func (q *Queue) AddBatch(ctx context.Context, entries []Entry) (added []bool, err error) {
	if len(entries) == 0 {
		return nil, nil
	}
	cmds, err := q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, e := range entries {
			p.XAdd(ctx, q.addArgs(e))
		}
		return nil
	})
	added = make([]bool, len(entries))
	failed := 0
	var first error
	for i := range entries {
		if i < len(cmds) && cmds[i].Err() == nil {
			added[i] = true
			continue
		}
		failed++
		if first == nil && i < len(cmds) {
			first = cmds[i].Err()
		}
	}
	if failed == 0 {
		return added, nil
	}
	if first == nil {
		first = err
	}
	return added, fmt.Errorf("add to %s: %d of %d entries not added: %w", q.stream, failed, len(entries), first)
}

func (q *Queue) addArgs(e Entry) *redis.XAddArgs {
	values := make([]any, 0, 2+2*len(e.Carrier))
	values = append(values, fieldID, e.MessageID)
	for k, v := range e.Carrier {
		if k != fieldID && v != "" {
			values = append(values, k, v)
		}
	}
	return &redis.XAddArgs{Stream: q.stream, Values: values}
}

// Oldest returns the time of the oldest entry on the stream (Redis' clock,
// from the entry's id: milliseconds since the epoch), and false when the
// stream is empty or missing. Acknowledged entries are deleted, so this is
// the oldest work not yet done.
func (q *Queue) Oldest(ctx context.Context) (time.Time, bool, error) {
	msgs, err := q.rdb.XRangeN(ctx, q.stream, "-", "+", 1).Result()
	if err != nil {
		return time.Time{}, false, fmt.Errorf("oldest entry of %s: %w", q.stream, err)
	}
	if len(msgs) == 0 {
		return time.Time{}, false, nil
	}
	ms, _, _ := strings.Cut(msgs[0].ID, "-")
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("oldest entry of %s: id %q: %w", q.stream, msgs[0].ID, err)
	}
	return time.UnixMilli(n), true, nil
}

// EnsureGroup creates the consumer group (and the stream) if missing. The
// group starts at the beginning of the stream, so entries added before it
// existed, for instance right after Redis lost its data, are still read.
func (q *Queue) EnsureGroup(ctx context.Context) error {
	err := q.rdb.XGroupCreateMkStream(ctx, q.stream, q.group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("create group %s on %s: %w", q.group, q.stream, err)
	}
	return nil
}

// Read waits up to block for at most count new entries for consumer.
// It returns no entries and no error when nothing arrived.
func (q *Queue) Read(ctx context.Context, consumer string, count int, block time.Duration) ([]Entry, error) {
	args := &redis.XReadGroupArgs{
		Group: q.group, Consumer: consumer,
		Streams: []string{q.stream, ">"},
		Count:   int64(count), Block: block,
	}
	res, err := q.rdb.XReadGroup(ctx, args).Result()
	if isNoGroup(err) {
		// Redis lost the group (restart without persistence, FLUSHALL).
		if err := q.EnsureGroup(ctx); err != nil {
			return nil, err
		}
		res, err = q.rdb.XReadGroup(ctx, args).Result()
	}
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", q.stream, err)
	}
	var out []Entry
	for _, s := range res {
		for _, m := range s.Messages {
			e := entryOf(m)
			e.Deliveries = 1
			out = append(out, e)
		}
	}
	return out, nil
}

// Reclaim takes over up to count entries that another consumer read and
// left idle, neither acknowledged nor renewed (Touch), for at least
// minIdle: it died, or lost Redis for that long. It scans the pending
// entries from cursor ("0-0" to start) and returns the entries it claimed,
// with their delivery counts, and the cursor for the next call ("0-0" once
// the scan went round). An entry renewed between the scan and the claim
// stays with its consumer.
func (q *Queue) Reclaim(ctx context.Context, consumer string, minIdle time.Duration, cursor string, count int) ([]Entry, string, error) {
	start := "-"
	if cursor != "0-0" && cursor != "" {
		start = "(" + cursor
	}
	pending, err := q.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{
		Stream: q.stream, Group: q.group, Idle: minIdle, Start: start, End: "+", Count: int64(count),
	}).Result()
	if isNoGroup(err) {
		return nil, "0-0", q.EnsureGroup(ctx)
	}
	if err != nil {
		return nil, cursor, fmt.Errorf("reclaim on %s: %w", q.stream, err)
	}
	if len(pending) == 0 {
		return nil, "0-0", nil
	}
	next := pending[len(pending)-1].ID
	if len(pending) < count {
		next = "0-0"
	}
	ids := make([]string, len(pending))
	delivered := make(map[string]int64, len(pending))
	for i, p := range pending {
		ids[i] = p.ID
		delivered[p.ID] = p.RetryCount
	}
	msgs, err := q.rdb.XClaim(ctx, &redis.XClaimArgs{
		Stream: q.stream, Group: q.group, Consumer: consumer, MinIdle: minIdle, Messages: ids,
	}).Result()
	if err != nil {
		return nil, cursor, fmt.Errorf("reclaim on %s: %w", q.stream, err)
	}
	out := make([]Entry, 0, len(msgs))
	for _, m := range msgs {
		e := entryOf(m)
		// XCLAIM counted this delivery.
		e.Deliveries = delivered[m.ID] + 1
		out = append(out, e)
	}
	return out, next, nil
}

// Touch renews consumer's entries in flight: it claims them again for
// consumer itself (XCLAIM … JUSTID), which resets their idle time without
// raising their delivery count, so Reclaim leaves them alone. It returns
// the ids it renewed; an entry missing from them was acknowledged, or
// deleted, meanwhile. The claim in Postgres decides who delivers a
// message; this only keeps the stream from offering a live entry to
// another worker.
func (q *Queue) Touch(ctx context.Context, consumer string, streamIDs ...string) ([]string, error) {
	if len(streamIDs) == 0 {
		return nil, nil
	}
	ids, err := q.rdb.XClaimJustID(ctx, &redis.XClaimArgs{
		Stream: q.stream, Group: q.group, Consumer: consumer, Messages: streamIDs,
	}).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("touch on %s: %w", q.stream, err)
	}
	return ids, nil
}

// Ack acknowledges entries and deletes them from the stream, so the
// stream's length is the work not yet done.
func (q *Queue) Ack(ctx context.Context, streamIDs ...string) error {
	if len(streamIDs) == 0 {
		return nil
	}
	_, err := q.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.XAck(ctx, q.stream, q.group, streamIDs...)
		p.XDel(ctx, q.stream, streamIDs...)
		return nil
	})
	if err != nil {
		return fmt.Errorf("ack on %s: %w", q.stream, err)
	}
	return nil
}

// Epoch returns a token that changes whenever Redis loses its data: a
// random value stored beside the stream, created if missing. created is
// true when this call had to create it, which means whatever was on the
// stream before is gone (or there never was anything).
func (q *Queue) Epoch(ctx context.Context) (epoch string, created bool, err error) {
	key := q.stream + ":epoch"
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	mine := hex.EncodeToString(b)
	ok, err := q.rdb.SetNX(ctx, key, mine, 0).Result()
	if err != nil {
		return "", false, fmt.Errorf("epoch: %w", err)
	}
	if ok {
		return mine, true, nil
	}
	epoch, err = q.rdb.Get(ctx, key).Result()
	if err != nil {
		return "", false, fmt.Errorf("epoch: %w", err)
	}
	return epoch, false, nil
}

// Depth is how much work the stream holds.
type Depth struct {
	// Length is the number of entries on the stream: acknowledged entries
	// are deleted, so this is everything not yet done.
	Length int64
	// Lag is the number of entries no worker has read yet.
	Lag int64
	// Pending is the number of entries read and not yet acknowledged.
	Pending int64
}

// Depth measures the stream and the group.
func (q *Queue) Depth(ctx context.Context) (Depth, error) {
	var d Depth
	n, err := q.rdb.XLen(ctx, q.stream).Result()
	if err != nil {
		return d, fmt.Errorf("depth of %s: %w", q.stream, err)
	}
	d.Length = n
	groups, err := q.rdb.XInfoGroups(ctx, q.stream).Result()
	if err != nil && !strings.Contains(err.Error(), "no such key") {
		return d, fmt.Errorf("depth of %s: %w", q.stream, err)
	}
	for _, g := range groups {
		if g.Name == q.group {
			d.Lag, d.Pending = g.Lag, g.Pending
		}
	}
	return d, nil
}

func entryOf(m redis.XMessage) Entry {
	e := Entry{StreamID: m.ID, Carrier: map[string]string{}}
	for k, v := range m.Values {
		s, _ := v.(string)
		if k == fieldID {
			e.MessageID = s
		} else {
			e.Carrier[k] = s
		}
	}
	return e
}

func isNoGroup(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOGROUP")
}
