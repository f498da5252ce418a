package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// The work one drain costs the stores, per message delivered: Postgres
// transactions committed and rows written in the bench database
// (pg_stat_database), how many of the updates of emails were heap-only
// tuple updates (HOT: no index entry written; pg_stat_user_tables), the
// bytes the indexes of emails grew by, the WAL written (pg_current_wal_lsn:
// the whole server's, so other databases' writes count too), the CPU time
// of the server processes of the bench database's sessions, of the worker
// and of Mailpit (/proc), and Redis
// commands by name (INFO commandstats of the bench's private
// redis-server). pg_stat_statements would name the
// statements too, but it needs shared_preload_libraries, a server
// restart the bench never makes on a shared Postgres.

// storeWork is a snapshot of the counters, or the difference of two.
type storeWork struct {
	PgCommits  float64 `json:"pg_commits"`
	PgUpdated  float64 `json:"pg_rows_updated"`
	PgInserted float64 `json:"pg_rows_inserted"`
	// PgHOTUpdated are the updates of emails that wrote no index entry.
	PgHOTUpdated float64 `json:"pg_emails_hot_updated"`
	// PgIndexBytes is the size of the indexes of emails.
	PgIndexBytes float64 `json:"pg_emails_index_bytes"`
	// PgWALBytes is the server's WAL position (all databases).
	PgWALBytes float64 `json:"pg_wal_bytes"`
	// PgCPUSeconds is the CPU time (user and system) of the Postgres
	// backends of the bench database's sessions.
	PgCPUSeconds float64 `json:"pg_backend_cpu_s"`
	// WorkerCPUSeconds and MailpitCPUSeconds are the CPU time of the
	// stack's worker and Mailpit processes.
	WorkerCPUSeconds  float64 `json:"worker_cpu_s"`
	MailpitCPUSeconds float64 `json:"mailpit_cpu_s"`
	// backends, workers and mailpit are each process's CPU seconds, by
	// pid (see cpuSince).
	backends, workers, mailpit map[int]float64
	Redis                      map[string]float64 `json:"redis_calls"`
}

// work reads the counters; a store that does not answer leaves its part
// empty.
func (b *bench) work(ctx context.Context, db *benchDB, st *stack) storeWork {
	w := storeWork{Redis: map[string]float64{}}
	var commits, upd, ins int64
	if err := db.pool.QueryRow(ctx, `
		SELECT xact_commit, tup_updated, tup_inserted FROM pg_stat_database WHERE datname = current_database()`).
		Scan(&commits, &upd, &ins); err == nil {
		w.PgCommits, w.PgUpdated, w.PgInserted = float64(commits), float64(upd), float64(ins)
	}
	_ = db.pool.QueryRow(ctx, `
		SELECT (SELECT n_tup_hot_upd FROM pg_stat_user_tables WHERE relid = 'emails'::regclass)::float8,
		       (SELECT sum(pg_relation_size(indexrelid)) FROM pg_index WHERE indrelid = 'emails'::regclass)::float8,
		       (pg_current_wal_lsn() - '0/0')::float8`).Scan(&w.PgHOTUpdated, &w.PgIndexBytes, &w.PgWALBytes)
	w.backends = db.backendCPU(ctx)
	w.workers, w.mailpit = stackCPU(st, "worker"), stackCPU(st, "mailpit")
	c := redis.NewClient(&redis.Options{Addr: b.redis.Addr})
	defer c.Close()
	info, err := c.Info(ctx, "commandstats").Result()
	if err == nil {
		w.Redis = parseCommandStats(info)
	}
	return w
}

// backendCPU is the CPU seconds of the Postgres backends of the bench
// database's sessions (pg_stat_activity, then /proc), by pid: the api's
// and worker's pools, the relay and the bench's own connections. Empty
// when Postgres does not answer.
func (d *benchDB) backendCPU(ctx context.Context) map[int]float64 {
	m := map[int]float64{}
	rows, err := d.pool.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database()`)
	if err != nil {
		return m
	}
	pids, _ := pgx.CollectRows(rows, pgx.RowTo[int32])
	for _, pid := range pids {
		if cpu, err := processCPU(int(pid)); err == nil {
			m[int(pid)] = cpu
		}
	}
	return m
}

// stackCPU is the CPU seconds of the stack's processes of kind, by pid.
func stackCPU(st *stack, kind string) map[int]float64 {
	m := map[int]float64{}
	for _, pid := range st.pids(kind) {
		if cpu, err := processCPU(pid); err == nil {
			m[pid] = cpu
		}
	}
	return m
}

// cpuSince is the CPU seconds the processes of after spent since before:
// a process new since then counts from its start, one gone since then
// not at all (never as negative work).
func cpuSince(before, after map[int]float64) float64 {
	var s float64
	for pid, cpu := range after {
		s += cpu - before[pid]
	}
	return s
}

// processCPU is the user and system CPU time of a process, in seconds
// (/proc/<pid>/stat fields 14 and 15, in USER_HZ = 100 ticks a second).
func processCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: fields start after it.
	_, rest, ok := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, b)
	}
	utime, uerr := strconv.ParseFloat(f[11], 64)
	stime, serr := strconv.ParseFloat(f[12], 64)
	if err := errors.Join(uerr, serr); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	const userHZ = 100
	return (utime + stime) / userHZ, nil
}

// parseCommandStats reads "cmdstat_xadd:calls=3,usec=..." lines.
func parseCommandStats(info string) map[string]float64 {
	m := map[string]float64{}
	for line := range strings.SplitSeq(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		for kv := range strings.SplitSeq(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				n, _ := strconv.ParseFloat(v, 64)
				m[strings.TrimPrefix(name, "cmdstat_")] = n
			}
		}
	}
	return m
}

// perMessage is (after - before) / n.
func (after storeWork) perMessage(before storeWork, n int) storeWork {
	d := storeWork{Redis: map[string]float64{}}
	if n <= 0 {
		return d
	}
	f := float64(n)
	d.PgCommits = (after.PgCommits - before.PgCommits) / f
	d.PgUpdated = (after.PgUpdated - before.PgUpdated) / f
	d.PgInserted = (after.PgInserted - before.PgInserted) / f
	d.PgHOTUpdated = (after.PgHOTUpdated - before.PgHOTUpdated) / f
	d.PgIndexBytes = (after.PgIndexBytes - before.PgIndexBytes) / f
	d.PgWALBytes = (after.PgWALBytes - before.PgWALBytes) / f
	d.PgCPUSeconds = cpuSince(before.backends, after.backends) / f
	d.WorkerCPUSeconds = cpuSince(before.workers, after.workers) / f
	d.MailpitCPUSeconds = cpuSince(before.mailpit, after.mailpit) / f
	for k, v := range after.Redis {
		if x := (v - before.Redis[k]) / f; x > 0 {
			d.Redis[k] = x
		}
	}
	return d
}

// formatCalls is "xack 1.00 xadd 1.00 ..." in name order.
func formatCalls(m map[string]float64) string {
	var b strings.Builder
	for _, k := range sortedKeys(m) {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(k + " " + strconv.FormatFloat(m[k], 'f', 2, 64))
	}
	return b.String()
}
