package store

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestForeignKeysAreIndexed reads the catalog: every foreign key's
// referencing columns lead some index of their table, so a delete or an
// update of the referenced row finds its referencing rows without scanning
// the referencing table.
func TestForeignKeysAreIndexed(t *testing.T) {
	s := open(t)
	rows, err := s.pool.Query(context.Background(), `
		SELECT c.conrelid::regclass::text || ' (' || c.conname || ')'
		FROM pg_constraint c
		WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace
		  AND NOT EXISTS (
		      SELECT 1 FROM pg_index i
		      WHERE i.indrelid = c.conrelid
		        AND (i.indkey::int2[])[0:cardinality(c.conkey) - 1] @> c.conkey
		        AND (i.indkey::int2[])[0:cardinality(c.conkey) - 1] <@ c.conkey)`)
	if err != nil {
		t.Fatal(err)
	}
	missing, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 {
		t.Errorf("got foreign keys without an index: %s, want none", strings.Join(missing, ", "))
	}
}
