package queue

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/carteiro/carteiro/services/internal/testenv"
)

func TestPublishReadAck(t *testing.T) {
	r := testenv.StartRedis(t)
	q := New(r.Client(), "test:emails", "workers")
	ctx := context.Background()
	if err := q.EnsureGroup(ctx); err != nil {
		t.Fatal(err)
	}
	if err := q.EnsureGroup(ctx); err != nil {
		t.Fatalf("second EnsureGroup: %v", err)
	}
	for _, e := range []Entry{
		{MessageID: "a", Carrier: map[string]string{"traceparent": "00-x-y-01", "tracestate": ""}},
		{MessageID: "b"},
	} {
		if err := q.Add(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if d, err := q.Depth(ctx); err != nil || d != (Depth{Length: 2, Lag: 2}) {
		t.Errorf("depth before reading: got %+v %v, want 2 on the stream, 2 unread", d, err)
	}
	got, err := q.Read(ctx, "c1", 10, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].MessageID != "a" || got[0].Carrier["traceparent"] != "00-x-y-01" || got[1].MessageID != "b" {
		t.Fatalf("read: got %+v", got)
	}
	if _, ok := got[0].Carrier["tracestate"]; ok {
		t.Errorf("empty tracestate should not be stored: got %+v", got[0].Carrier)
	}
	// Nothing new for another consumer of the group.
	if more, _ := q.Read(ctx, "c2", 10, 50*time.Millisecond); len(more) != 0 {
		t.Errorf("second read: got %d entries, want 0", len(more))
	}
	if d, _ := q.Depth(ctx); d != (Depth{Length: 2, Pending: 2}) {
		t.Errorf("depth after reading: got %+v, want 2 pending", d)
	}
	if err := q.Ack(ctx, got[0].StreamID); err != nil {
		t.Fatal(err)
	}
	if n := r.Client().XLen(ctx, "test:emails").Val(); n != 1 {
		t.Errorf("stream length after one ack: got %d, want 1", n)
	}
	// The unacknowledged entry is reclaimed by another consumer once idle.
	time.Sleep(60 * time.Millisecond)
	claimed, _, err := q.Reclaim(ctx, "c2", 50*time.Millisecond, "0-0", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(claimed) != 1 || claimed[0].MessageID != "b" || claimed[0].Deliveries != 2 {
		t.Errorf("reclaim: got %+v, want entry b, delivered twice", claimed)
	}
	if got[0].Deliveries != 1 {
		t.Errorf("first read: got %d deliveries, want 1", got[0].Deliveries)
	}
}

// Touch renews an entry in flight without counting a delivery; an entry
// left idle is reclaimed, each time counting one more delivery.
func TestTouchAndDeliveryCount(t *testing.T) {
	r := testenv.StartRedis(t)
	q := New(r.Client(), "test:emails", "workers")
	ctx := context.Background()
	if err := q.EnsureGroup(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"live", "abandoned"} {
		if err := q.Add(ctx, Entry{MessageID: id}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := q.Read(ctx, "c1", 10, 100*time.Millisecond)
	if err != nil || len(got) != 2 {
		t.Fatalf("read: got %+v %v", got, err)
	}
	const idle = time.Second
	time.Sleep(idle + 200*time.Millisecond)
	touched, err := q.Touch(ctx, "c1", got[0].StreamID)
	if err != nil || len(touched) != 1 || touched[0] != got[0].StreamID {
		t.Fatalf("touch: got %v %v, want %s", touched, err, got[0].StreamID)
	}
	claimed, next, err := q.Reclaim(ctx, "c2", idle, "0-0", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(claimed) != 1 || claimed[0].MessageID != "abandoned" || claimed[0].Deliveries != 2 || next != "0-0" {
		t.Fatalf("reclaim: got %+v next %s, want only the abandoned entry, delivered twice", claimed, next)
	}
	pending, err := r.Client().XPendingExt(ctx, &redis.XPendingExtArgs{Stream: "test:emails", Group: "workers", Start: "-", End: "+", Count: 10}).Result()
	if err != nil || len(pending) != 2 {
		t.Fatalf("XPENDING: %+v %v", pending, err)
	}
	if p := pending[0]; p.Consumer != "c1" || p.RetryCount != 1 {
		t.Errorf("touched entry: consumer %s, delivered %d times; want c1, once", p.Consumer, p.RetryCount)
	}
	// Touching an acknowledged entry renews nothing.
	if err := q.Ack(ctx, got[0].StreamID); err != nil {
		t.Fatal(err)
	}
	if touched, err := q.Touch(ctx, "c1", got[0].StreamID); err != nil || len(touched) != 0 {
		t.Errorf("touch after ack: got %v %v, want nothing", touched, err)
	}
	// The scan goes page by page.
	for range 3 {
		if err := q.Add(ctx, Entry{MessageID: "more"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := q.Read(ctx, "c3", 10, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(idle + 200*time.Millisecond)
	seen := 0
	cursor := "0-0"
	for i := 0; i < 10; i++ {
		page, n, err := q.Reclaim(ctx, "c4", idle, cursor, 2)
		if err != nil {
			t.Fatal(err)
		}
		seen += len(page)
		if cursor = n; cursor == "0-0" {
			break
		}
	}
	if seen != 4 {
		t.Errorf("paged reclaim: got %d entries, want 4 (3 new and the abandoned one)", seen)
	}
}

func TestReadRecreatesLostGroup(t *testing.T) {
	r := testenv.StartRedis(t)
	q := New(r.Client(), "test:emails", "workers")
	ctx := context.Background()
	if err := q.EnsureGroup(ctx); err != nil {
		t.Fatal(err)
	}
	r.Client().FlushAll(ctx)
	// Published after the loss, before the group exists again.
	if err := q.Add(ctx, Entry{MessageID: "late"}); err != nil {
		t.Fatal(err)
	}
	got, err := q.Read(ctx, "c1", 10, 100*time.Millisecond)
	if err != nil {
		t.Fatalf("read after loss: %v", err)
	}
	if len(got) != 1 || got[0].MessageID != "late" {
		t.Errorf("got %+v, want the entry published before the group was recreated", got)
	}
}

func TestEpochChangesWhenRedisLosesData(t *testing.T) {
	r := testenv.StartRedis(t)
	q := New(r.Client(), "test:emails", "workers")
	ctx := context.Background()
	e1, created, err := q.Epoch(ctx)
	if err != nil || !created {
		t.Fatalf("first: got %q %v %v, want a created epoch", e1, created, err)
	}
	e2, created, _ := q.Epoch(ctx)
	if e2 != e1 || created {
		t.Errorf("second: got %q created=%v, want %q unchanged", e2, created, e1)
	}
	r.Stop()
	r.Start() // no persistence: everything is gone
	e3, created, err := q.Epoch(ctx)
	if err != nil || !created || e3 == e1 {
		t.Errorf("after restart: got %q created=%v err=%v, want a new epoch", e3, created, err)
	}
}

// AddBatch puts every entry on the stream in one round trip, and Oldest
// reads the time of the first one left.
func TestAddBatchAndOldest(t *testing.T) {
	r := testenv.StartRedis(t)
	q := New(r.Client(), "test:batch", "workers")
	ctx := context.Background()
	if _, ok, err := q.Oldest(ctx); ok || err != nil {
		t.Fatalf("oldest of a missing stream: got %v %v, want false, nil", ok, err)
	}
	before := time.Now().Add(-time.Second)
	added, err := q.AddBatch(ctx, []Entry{{MessageID: "a", Carrier: map[string]string{"traceparent": "00-x-y-01"}}, {MessageID: "b"}, {MessageID: "c"}})
	if err != nil || len(added) != 3 || !added[0] || !added[2] {
		t.Fatalf("add batch: got %v %v, want all 3 added", added, err)
	}
	if err := q.EnsureGroup(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := q.Read(ctx, "c1", 10, 100*time.Millisecond)
	if err != nil || len(got) != 3 || got[0].MessageID != "a" || got[0].Carrier["traceparent"] != "00-x-y-01" || got[2].MessageID != "c" {
		t.Fatalf("read: got %+v %v, want a, b, c in order", got, err)
	}
	oldest, ok, err := q.Oldest(ctx)
	if err != nil || !ok || oldest.Before(before) || oldest.After(time.Now().Add(time.Second)) {
		t.Errorf("oldest: got %v %v %v, want about now", oldest, ok, err)
	}
	if err := q.Ack(ctx, got[0].StreamID, got[1].StreamID, got[2].StreamID); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := q.Oldest(ctx); ok {
		t.Error("oldest after every entry was acknowledged: got one, want none")
	}
	// Redis gone: every entry reported not added.
	r.Stop()
	added, err = q.AddBatch(ctx, []Entry{{MessageID: "d"}})
	if err == nil || len(added) != 1 || added[0] {
		t.Errorf("add batch on a closed client: got %v %v, want an error and nothing added", added, err)
	}
}
