package queue

import (
	"context"
	"testing"
	"time"

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
	if len(claimed) != 1 || claimed[0].MessageID != "b" {
		t.Errorf("reclaim: got %+v, want entry b", claimed)
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
