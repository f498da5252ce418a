package store

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/carteiro/carteiro/services/internal/testenv"
)

// The drain's statements at the batch sizes a drain runs them with (claims
// of about 30 rows, outcomes of about 6), on a table with a history of
// sent messages beside the backlog: go test -bench 'ClaimBatch|RecordOutcomes'
// -benchmem. Besides the client's time and allocations per statement, each
// reports the CPU the database's Postgres backends spent per message
// (pg-cpu-µs/msg, from /proc/<pid>/schedstat: Postgres must run on this
// machine; the metric is left out otherwise).

// benchHistory is how many sent messages the table holds beside the
// backlog, as after a few bench rounds.
const benchHistory = 100_000

// benchStore is a migrated store whose emails table holds benchHistory
// sent rows and then backlog queued, published ones (ids in the order of
// their creation, as UUIDv7 are), analyzed before the backlog as the
// bench's settle leaves it. It returns the backlog's ids in order.
func benchStore(b *testing.B, backlog int) (*Store, []string) {
	b.Helper()
	ctx := context.Background()
	s, err := Open(ctx, testenv.NewDatabase(b), slog.New(slog.DiscardHandler), GenericPlans())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Close)
	if err := s.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	fill := `INSERT INTO emails (id, assunto, mensagem, created_at, status, attempts, sent_at, message_id,
		    traceparent, published_at, publish_count, fencing_token)
		SELECT ('01930000-0000-7000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, 'Assunto ' || i,
		    repeat('Olá, isto é uma mensagem de teste do carteiro. ', 4), now() - interval '1 hour' + i * interval '1 ms',
		    $3::text, $4::int, CASE WHEN $3::text = 'sent' THEN now() END, CASE WHEN $3::text = 'sent' THEN i || '@bench.test' END,
		    '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00', now(), 1, $4::int
		FROM generate_series($1::bigint, $2::bigint) i`
	if _, err := s.pool.Exec(ctx, fill, 1, benchHistory, "sent", 1); err != nil {
		b.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, "VACUUM ANALYZE emails"); err != nil {
		b.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, fill, benchHistory+1, benchHistory+backlog, "queued", 0); err != nil {
		b.Fatal(err)
	}
	ids := make([]string, backlog)
	for i := range ids {
		ids[i] = fmt.Sprintf("01930000-0000-7000-8000-%012x", benchHistory+1+i)
	}
	return s, ids
}

// backendCPU is the CPU time, in seconds, the Postgres backends of s's
// database have used so far, by pid; ok is false when /proc does not show
// them (Postgres on another host).
func backendCPU(b *testing.B, s *Store) (cpu map[int]float64, ok bool) {
	b.Helper()
	rows, err := s.pool.Query(context.Background(), `SELECT pid FROM pg_stat_activity WHERE datname = current_database()`)
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	cpu = map[int]float64{}
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			b.Fatal(err)
		}
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/schedstat", pid))
		if err != nil {
			return nil, false
		}
		ns, err := strconv.ParseFloat(strings.Fields(string(raw))[0], 64)
		if err != nil {
			b.Fatal(err)
		}
		cpu[pid] = ns / 1e9
	}
	if rows.Err() != nil {
		b.Fatal(rows.Err())
	}
	return cpu, true
}

// reportBackendCPU reports the backends' CPU per message since before.
func reportBackendCPU(b *testing.B, s *Store, before map[int]float64, messages int) {
	b.Helper()
	after, ok := backendCPU(b, s)
	if !ok || before == nil {
		return
	}
	var used float64
	for pid, v := range after {
		used += v - before[pid]
	}
	b.ReportMetric(used*1e6/float64(messages), "pg-cpu-µs/msg")
}

func BenchmarkClaimBatch(b *testing.B) {
	for _, size := range []int{30} {
		b.Run(fmt.Sprintf("rows=%d", size), func(b *testing.B) {
			s, ids := benchStore(b, b.N*size)
			ctx := context.Background()
			reqs := make([]ClaimRequest, len(ids))
			for i, id := range ids {
				reqs[i] = ClaimRequest{ID: id, MessageID: id + "@bench.test"}
			}
			before, _ := backendCPU(b, s)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				claims, err := s.ClaimBatch(ctx, reqs[i*size:(i+1)*size], time.Minute, 5)
				if err != nil || len(claims) != size {
					b.Fatalf("claim: got %d claims, %v; want %d", len(claims), err, size)
				}
			}
			b.StopTimer()
			reportBackendCPU(b, s, before, b.N*size)
		})
	}
}

func BenchmarkRecordOutcomes(b *testing.B) {
	for _, size := range []int{1, 6} {
		b.Run(fmt.Sprintf("rows=%d", size), func(b *testing.B) {
			s, ids := benchStore(b, b.N*size)
			ctx := context.Background()
			// Claimed, as by ClaimBatch: sending under token 1.
			if _, err := s.pool.Exec(ctx, `UPDATE emails SET status = 'sending', attempts = 1, fencing_token = 1,
				sending_since = now(), lease_expires_at = now() + interval '1 hour' WHERE status = 'queued'`); err != nil {
				b.Fatal(err)
			}
			outcomes := make([]Outcome, len(ids))
			for i, id := range ids {
				outcomes[i] = Outcome{Lease: Lease{ID: id, Token: 1}, Kind: OutcomeSent}
			}
			before, _ := backendCPU(b, s)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				res, err := s.RecordOutcomes(ctx, outcomes[i*size:(i+1)*size])
				if err != nil {
					b.Fatal(err)
				}
				for _, r := range res {
					if r.Err != nil {
						b.Fatal(r.Err)
					}
				}
			}
			b.StopTimer()
			reportBackendCPU(b, s, before, b.N*size)
		})
	}
}
