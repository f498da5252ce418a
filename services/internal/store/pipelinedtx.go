package store

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// A group-commit batch is a few round trips, each a wait for a backend on
// a busy machine: its transaction's BEGIN travels in the same pipeline
// (pgx.Batch: one Sync, one round trip) as its first statements instead
// of a round trip of its own, and the transaction's id comes back in the
// RETURNING of the statement that writes instead of a SELECT of its own.

// batchTx is what a group-commit batch's statements need from their
// transaction; pgx.Tx is one as well.
type batchTx interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// pipelinedTx is a transaction on conn whose BEGIN is sent in front of
// its first statement or batch.
type pipelinedTx struct {
	conn  *pgxpool.Conn
	begun bool
}

// SendBatch sends b, preceded by BEGIN the first time.
func (t *pipelinedTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if !t.begun {
		t.begun = true
		b.QueuedQueries = append([]*pgx.QueuedQuery{{SQL: "BEGIN"}}, b.QueuedQueries...)
	}
	return t.conn.SendBatch(ctx, b)
}

// QueryRow runs sql, preceded by BEGIN the first time.
func (t *pipelinedTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if t.begun {
		return t.conn.QueryRow(ctx, sql, args...)
	}
	b := &pgx.Batch{}
	b.Queue(sql, args...)
	br := t.SendBatch(ctx, b)
	if _, err := br.Exec(); err != nil { // BEGIN
		_ = br.Close()
		return errRow{err}
	}
	return batchRow{br: br, row: br.QueryRow()}
}

// batchRow is the one row of a batch's last statement; Scan ends the batch.
type batchRow struct {
	br  pgx.BatchResults
	row pgx.Row
}

func (r batchRow) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	if cerr := r.br.Close(); err == nil {
		err = cerr
	}
	return err
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// inTxPipelined runs fn in a transaction that fn's first statements begin
// (pipelinedTx) and commits it under ctx, with inTx's guarantees: fn
// returns what the transaction wrote, learned in the statement that writes
// (RETURNING pg_current_xact_id()), whenever it wrote anything; nil says it
// wrote nothing, so that a failed COMMIT lost nothing.
func (s *Store) inTxPipelined(ctx context.Context, fn func(batchTx) (*written, error)) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	t := &pipelinedTx{conn: conn}
	defer func() {
		// Ends a transaction left open on a live connection; the pool
		// closes a connection still in one, which aborts it as well.
		if conn.Conn().PgConn().TxStatus() != 'I' && !conn.Conn().IsClosed() {
			rctx, cancel := context.WithTimeout(context.Background(), s.queryTimeout)
			defer cancel()
			_, _ = conn.Exec(rctx, "ROLLBACK")
		}
		conn.Release()
	}()
	w, err := fn(t)
	if err != nil || !t.begun {
		return err
	}
	return s.commit(ctx, w, func(ctx context.Context) error {
		tag, err := conn.Exec(ctx, "COMMIT")
		if err == nil && tag.String() == "ROLLBACK" {
			return pgx.ErrTxCommitRollback // the transaction had failed
		}
		return err
	})
}
