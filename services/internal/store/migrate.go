package store

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate brings the schema up to date, on connections of its own
// (migrationDB). A Postgres advisory lock makes
// concurrent callers (several api processes starting together) take turns.
func (s *Store) Migrate(ctx context.Context) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return err
	}
	db := s.migrationDB()
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub, goose.WithSessionLocker(locker))
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	results, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	for _, r := range results {
		s.log.InfoContext(ctx, "migration applied", "source", r.Source.Path, "duration", r.Duration)
	}
	return nil
}

// migrationDB opens connections for migrations: the pool's, without its
// statement_timeout, which is sized for one request's statement, not for
// a migration that rewrites emails (00005 adds a stored generated column:
// every row is written again, about a second per 300,000 rows here, so
// the 4 query timeouts of statement_timeout would refuse the upgrade of a
// database of a few million messages). A migration's wait for a lock
// stays bounded as before (lock_timeout): stuck behind a long transaction,
// it fails rather than queuing every request behind its lock.
func (s *Store) migrationDB() *sql.DB {
	cc := s.pool.Config().ConnConfig.Copy()
	cc.RuntimeParams["statement_timeout"] = "0"
	cc.RuntimeParams["lock_timeout"] = fmt.Sprint(s.statementTimeout.Milliseconds())
	return stdlib.OpenDB(*cc)
}
