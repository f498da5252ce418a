package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Phase 1, the ceiling: pgbench doing what the api's INSERT does, one row
// per transaction, with the same columns and values of the same size.
//
// The rows get next_attempt_at = 'infinity' so the outbox relay (which
// publishes only rows whose next attempt is due) leaves them alone: the
// ceiling is the database's, not the database's plus carteiro's delivery
// of the rows. They are still queued and unpublished, so every index the
// api's INSERT touches is touched. They are deleted after each run.
//
// -M prepared because pgx, the api's driver, prepares its statements too.
const pgbenchScript = `-- carteiro make bench: phase 1 (one INSERT per transaction, like the api's)
\set n random(1, 1000000000)
INSERT INTO emails (id, assunto, mensagem, traceparent, tracestate, next_attempt_at)
VALUES (gen_random_uuid(), 'bench pgbench ' || :n, '%s',
        '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', NULL, 'infinity');
`

type pgbenchRun struct {
	Round        int     `json:"round"`
	TPS          float64 `json:"tps"`
	Transactions int64   `json:"transactions"`
	Failed       int64   `json:"failed"`
	LatencyAvgMs float64 `json:"latency_avg_ms"`
	Clients      int     `json:"clients"`
	Threads      int     `json:"threads"`
	DurationS    float64 `json:"duration_s"`
	Command      string  `json:"command"`
	RowsDeleted  int64   `json:"rows_deleted"`
}

var (
	reTPS     = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \(without initial connection time\)`)
	reTx      = regexp.MustCompile(`(?m)^number of transactions actually processed: ([0-9]+)`)
	reFailed  = regexp.MustCompile(`(?m)^number of failed transactions: ([0-9]+)`)
	reLatency = regexp.MustCompile(`(?m)^latency average = ([0-9.]+) ms`)
)

func runPgbench(ctx context.Context, s settings, db *benchDB, dir string, round int) (pgbenchRun, error) {
	script := filepath.Join(dir, "pgbench-insert.sql")
	if err := os.WriteFile(script, []byte(fmt.Sprintf(pgbenchScript, benchText)), 0o644); err != nil {
		return pgbenchRun{}, err
	}
	secs := int(s.Duration.D().Round(time.Second).Seconds())
	if secs < 1 {
		secs = 1
	}
	args := []string{"-n", "-M", "prepared", "-c", strconv.Itoa(s.PgbenchClients), "-j", strconv.Itoa(s.PgbenchThreads),
		"-T", strconv.Itoa(secs), "-f", script,
		"-h", s.DBHost, "-p", s.DBPort, "-U", s.DBAdmin, s.DBName}
	r := pgbenchRun{Round: round, Clients: s.PgbenchClients, Threads: s.PgbenchThreads, DurationS: float64(secs),
		Command: "pgbench " + strings.Join(args, " ")}
	cmd := exec.CommandContext(ctx, "pgbench", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	text := out.String()
	parsePgbench(text, &r)
	// The ceiling's rows go, whatever happened.
	tag, derr := db.pool.Exec(context.WithoutCancel(ctx), `DELETE FROM emails WHERE next_attempt_at = 'infinity'`)
	if derr == nil {
		r.RowsDeleted = tag.RowsAffected()
	}
	switch {
	case err != nil:
		return r, fmt.Errorf("pgbench: %w\n%s", err, indent(tail(text, 20)))
	case r.TPS == 0:
		return r, fmt.Errorf("pgbench: no tps in its output\n%s", indent(tail(text, 20)))
	case r.Failed > 0:
		return r, fmt.Errorf("pgbench: %d failed transaction(s)", r.Failed)
	case derr != nil:
		return r, fmt.Errorf("pgbench: delete its rows: %w", derr)
	}
	return r, nil
}

// parsePgbench reads pgbench's summary into r.
func parsePgbench(text string, r *pgbenchRun) {
	if m := reTPS.FindStringSubmatch(text); m != nil {
		r.TPS, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := reTx.FindStringSubmatch(text); m != nil {
		r.Transactions, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := reFailed.FindStringSubmatch(text); m != nil {
		r.Failed, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := reLatency.FindStringSubmatch(text); m != nil {
		r.LatencyAvgMs, _ = strconv.ParseFloat(m[1], 64)
	}
}
