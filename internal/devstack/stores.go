package devstack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// SetupDatabase creates the stack's Postgres role (LOGIN, with the
// configured password) and its database, owned by the role, unless they
// exist; an existing role keeps its password. It connects as DB_ADMIN_USER
// to DB_ADMIN_HOST:DB_PORT's postgres database; libpq's PG* variables and
// ~/.pgpass supply what the admin connection needs beyond that.
func (c Config) SetupDatabase(ctx context.Context) error {
	password := c.DB.Password
	if c.DB.PasswordFile != "" {
		b, err := os.ReadFile(c.DB.PasswordFile)
		if err != nil {
			return fmt.Errorf("DB_PASSWORD_FILE: %w", err)
		}
		password = strings.TrimRight(string(b), "\r\n")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%s user=%s dbname=postgres connect_timeout=3",
		quoteConninfo(c.DB.AdminHost), quoteConninfo(c.DB.Port), quoteConninfo(c.DB.AdminUser)))
	if err != nil {
		return fmt.Errorf("database setup: %w", err)
	}
	admin, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("could not connect to Postgres at %s:%s as %s to create the role and database (is it running? set DB_ADMIN_USER, or SKIP_DB_SETUP=1): %w",
			c.DB.AdminHost, c.DB.Port, c.DB.AdminUser, err)
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
