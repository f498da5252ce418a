package devstack

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"
)

// SetupDatabase creates the stack's Postgres role (LOGIN, with the
// configured password) and its database, owned by the role, unless they
// exist; an existing role keeps its password. It connects as DB_ADMIN_USER
// to DB_ADMIN_HOST:DB_PORT's postgres database; libpq's PG* variables and
// ~/.pgpass supply what the admin connection needs beyond that.
func (c Config) SetupDatabase(ctx context.Context) error {
	password, err := readSecret(c.DB.Password, c.DB.PasswordFile, "DB_PASSWORD_FILE")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	admin, err := c.adminConn(ctx, "create the role and database", "SKIP_DB_SETUP=1")
	if err != nil {
		return err
	}
	defer admin.Close(context.Background())
	// CREATE ROLE and CREATE DATABASE take no parameters: the server
	// quotes the name and the password itself (format %I, %L).
	for _, step := range []struct {
		what, query string
		args        []any
	}{
		{"role", `SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', $1::text, $2::text)
		           WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, []any{c.DB.User, password}},
		{"database", `SELECT format('CREATE DATABASE %I OWNER %I', $1::text, $2::text)
		               WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, []any{c.DB.Name, c.DB.User}},
	} {
		var stmt string
		err := admin.QueryRow(ctx, step.query, step.args...).Scan(&stmt)
		if errors.Is(err, pgx.ErrNoRows) {
			continue // it exists
		}
		if err == nil {
			_, err = admin.Exec(ctx, stmt)
		}
		if err != nil {
			return fmt.Errorf("create the %s (DB_USER %q, DB_NAME %q): %w", step.what, c.DB.User, c.DB.Name, err)
		}
	}
	return nil
}

// adminConn connects as DB_ADMIN_USER to DB_ADMIN_HOST:DB_PORT's postgres
// database, to do what; skip says how to do without.
func (c Config) adminConn(ctx context.Context, what, skip string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%s user=%s dbname=postgres connect_timeout=3",
		quoteConninfo(c.DB.AdminHost), quoteConninfo(c.DB.Port), quoteConninfo(c.DB.AdminUser)))
	if err != nil {
		return nil, fmt.Errorf("database setup: %w", err)
	}
	admin, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("could not connect to Postgres at %s:%s as %s to %s (is it running? set DB_ADMIN_USER and its password "+
			"(PGPASSWORD or ~/.pgpass), or DB_ADMIN_HOST to the server's socket directory for peer authentication, or %s; README \"Run it\"): %w",
			c.DB.AdminHost, c.DB.Port, c.DB.AdminUser, what, skip, err)
	}
	return admin, nil
}

// SetupMonitorRole makes postgres_exporter's login: the role
// POSTGRES_EXPORTER_USER (LOGIN, the configured password), a member of
// pg_monitor (Postgres's predefined role for monitoring: it reads the
// statistics views and settings and may call pg_ls_waldir) and of nothing
// else, with no privilege on any table. A missing role is created; an
// existing one keeps its password and is granted pg_monitor. Connects as
// SetupDatabase does. Concurrent setups of one server (test stacks) are
// safe: a role created meanwhile counts as existing.
func (c Config) SetupMonitorRole(ctx context.Context) error {
	e := c.PostgresExporter
	password, err := readSecret(e.Password, e.PasswordFile, "POSTGRES_EXPORTER_PASSWORD_FILE")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	admin, err := c.adminConn(ctx, "create postgres_exporter's role", "SKIP_EXPORTER_SETUP=1")
	if err != nil {
		return err
	}
	defer admin.Close(context.Background())
	var create string
	err = admin.QueryRow(ctx, `SELECT format('CREATE ROLE %I LOGIN PASSWORD %L IN ROLE pg_monitor', $1::text, $2::text)
	                             WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, e.User, password).Scan(&create)
	if err == nil {
		_, err = admin.Exec(ctx, create)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && (pgErr.Code == "42710" || pgErr.Code == "23505") {
			err = nil // duplicate_object, unique_violation: another stack created it just now
		}
	}
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("create the role %q (POSTGRES_EXPORTER_USER): %w", e.User, err)
	}
	var grant string
	if err := admin.QueryRow(ctx, `SELECT format('GRANT pg_monitor TO %I', $1::text)`, e.User).Scan(&grant); err != nil {
		return err
	}
	if _, err := admin.Exec(ctx, grant); err != nil {
		return fmt.Errorf("grant pg_monitor to %q (POSTGRES_EXPORTER_USER): %w", e.User, err)
	}
	return nil
}

// SetupRedisExporterUser makes redis_exporter's login on REDIS_ADDR: the ACL
// user REDIS_EXPORTER_USER, reset and given its password and
// RedisExporterACL's rules (ACL SETUSER; Redis 6.2 or later for the
// read-only key pattern). It connects with REDIS_PASSWORD, as the default
// user, which must be allowed ACL SETUSER. The user lives until Redis
// restarts, unless its configuration is saved (ACL SAVE).
func (c Config) SetupRedisExporterUser(ctx context.Context) error {
	e := c.RedisExporter
	password, err := readSecret(e.Password, e.PasswordFile, "REDIS_EXPORTER_PASSWORD_FILE")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	r := redis.NewClient(&redis.Options{Addr: c.RedisAddr, Password: c.RedisPassword, MaxRetries: -1})
	defer r.Close()
	args := []any{"ACL", "SETUSER", e.User, "reset", "on", ">" + password}
	for _, rule := range RedisExporterACL(e.Stream) {
		args = append(args, rule)
	}
	if err := r.Do(ctx, args...).Err(); err != nil {
		return fmt.Errorf("create redis_exporter's ACL user %q on %s (REDIS_EXPORTER_USER; or SKIP_EXPORTER_SETUP=1): %w", e.User, c.RedisAddr, err)
	}
	return nil
}

// quoteConninfo quotes a libpq keyword/value.
func quoteConninfo(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// CheckRedis PINGs REDIS_ADDR; an error says why the workers will get no
// messages (the stack starts anyway, as Redis may come later).
func (c Config) CheckRedis(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	r := redis.NewClient(&redis.Options{Addr: c.RedisAddr, Password: c.RedisPassword, MaxRetries: -1})
	defer r.Close()
	if err := r.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("Redis at %s does not answer PING (%v); the workers will get no messages", c.RedisAddr, err)
	}
	return nil
}
