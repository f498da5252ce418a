package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/carteiro/carteiro/services/internal/config"
)

// StallCommits makes COMMIT slow on db, whose emails table must exist: a
// row whose assunto is "gate N" (N a number) makes its transaction's COMMIT
// wait until the test opens gate N (see CloseGate), and one whose assunto is
// "gate N abort" then fails its transaction. It is a deferred constraint
// trigger, so COMMIT itself runs it. The wait ignores cancel requests (pgx
// sends one when a deadline closes a connection; statement_timeout is one
// too), as a COMMIT that wrote its commit record, or waits for a synchronous
// standby, does: only the gate or pg_terminate_backend ends it.
func StallCommits(t testing.TB, db config.Postgres) {
	t.Helper()
	stall(t, db, `CREATE CONSTRAINT TRIGGER stall_commit AFTER INSERT ON emails
		DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION stall_commit()`)
}

// StallOutcomes makes the COMMIT of an outcome write slow on db, as
// StallCommits does an insert's: an UPDATE that takes a "gate N" row out of
// sending (MarkSent, MarkFailed, MarkDead, Release; not a claim, nor a
// lease's renewal) waits at gate N when it commits. A caller whose deadline
// passes meanwhile gets an error, and the write commits once the gate
// opens: an answer lost after the commit.
func StallOutcomes(t testing.TB, db config.Postgres) {
	t.Helper()
	stall(t, db, `CREATE CONSTRAINT TRIGGER stall_outcome AFTER UPDATE ON emails
		DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
		WHEN (OLD.status = 'sending' AND NEW.status <> 'sending') EXECUTE FUNCTION stall_commit()`)
}

// stall creates on db the trigger function of StallCommits and
// StallOutcomes, then trigger, which runs it.
func stall(t testing.TB, db config.Postgres, trigger string) {
	t.Helper()
	conn := connect(t, db)
	defer conn.Close(context.Background())
	_, err := conn.Exec(context.Background(), `
		CREATE OR REPLACE FUNCTION stall_commit() RETURNS trigger LANGUAGE plpgsql AS $$
		DECLARE gate text := substring(NEW.assunto FROM '^gate (\d+)');
		BEGIN
			IF gate IS NOT NULL THEN
				LOOP
					BEGIN
						PERFORM pg_advisory_xact_lock_shared(gate::bigint);
						EXIT;
					EXCEPTION WHEN query_canceled THEN
						-- wait on
					END;
				END LOOP;
				IF NEW.assunto LIKE '% abort' THEN
					RAISE EXCEPTION 'refused at commit';
				END IF;
			END IF;
			RETURN NULL;
		END $$;
		`+trigger)
	if err != nil {
		t.Fatalf("stall commits: %v", err)
	}
}

// Gate holds COMMITs of "gate N" rows (see StallCommits): an advisory lock
// the test holds on a connection of its own.
type Gate struct {
	t    testing.TB
	conn *pgx.Conn
	n    int64
}

// CloseGate closes gate n on db until Open.
func CloseGate(t testing.TB, db config.Postgres, n int64) *Gate {
	t.Helper()
	conn := connect(t, db)
	t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(context.Background(), `SELECT pg_advisory_lock($1)`, n); err != nil {
		t.Fatalf("close gate %d: %v", n, err)
	}
	return &Gate{t: t, conn: conn, n: n}
}

// WaitBlocked returns once a COMMIT waits at the gate, and fails the test
// if none does within a minute.
func (g *Gate) WaitBlocked() {
	g.t.Helper()
	for range 1200 {
		var n int
		err := g.conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_locks
			WHERE locktype = 'advisory' AND classid = 0 AND objid = $1 AND NOT granted`, g.n).Scan(&n)
		if err != nil {
			g.t.Fatalf("gate %d: %v", g.n, err)
		}
		if n > 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	g.t.Fatalf("no COMMIT waits at gate %d", g.n)
}

// Open lets the COMMITs waiting at the gate go on.
func (g *Gate) Open() {
	g.t.Helper()
	if _, err := g.conn.Exec(context.Background(), `SELECT pg_advisory_unlock($1)`, g.n); err != nil {
		g.t.Fatalf("open gate %d: %v", g.n, err)
	}
}

func connect(t testing.TB, db config.Postgres) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, db.URL())
	if err != nil {
		t.Fatalf("connect to %s: %v", db, err)
	}
	return conn
}
