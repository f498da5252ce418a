package queue

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/carteiro/carteiro/services/internal/testenv"
)

// BenchmarkAck acknowledges one entry per call, as a drain does (its
// batches are a few entries): the client's cost and the round trip of one
// acknowledgement.
func BenchmarkAck(b *testing.B) {
	r := testenv.StartRedis(b)
	ctx := context.Background()
	q := New(r.Client(), "bench:ack", "workers")
	if err := q.EnsureGroup(ctx); err != nil {
		b.Fatal(err)
	}
	entries := make([]Entry, b.N)
	for i := range entries {
		entries[i] = Entry{MessageID: "m"}
	}
	for i := 0; i < len(entries); i += 1000 {
		if _, err := q.AddBatch(ctx, entries[i:min(i+1000, len(entries))]); err != nil {
			b.Fatal(err)
		}
	}
	var ids []string
	for len(ids) < b.N {
		got, err := q.Read(ctx, "c1", 1000, 100*time.Millisecond)
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range got {
			ids = append(ids, e.StreamID)
		}
	}
	before := redisCPU(b, r)
	b.ReportAllocs()
	b.ResetTimer()
	for _, id := range ids {
		if err := q.Ack(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric((redisCPU(b, r)-before)*1e6/float64(b.N), "redis-cpu-µs/op")
	if n := r.Client().XLen(ctx, "bench:ack").Val(); n != 0 {
		b.Fatalf("stream length after acking every entry: got %d, want 0", n)
	}
}

// redisCPU is the seconds of CPU (user and system) the Redis server has
// used, from INFO cpu.
func redisCPU(b *testing.B, r *testenv.Redis) float64 {
	info, err := r.Client().Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total float64
	for _, line := range strings.Split(info, "\r\n") {
		k, v, _ := strings.Cut(line, ":")
		if k == "used_cpu_user" || k == "used_cpu_sys" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatalf("INFO cpu: %s: %v", line, err)
			}
			total += f
		}
	}
	return total
}
