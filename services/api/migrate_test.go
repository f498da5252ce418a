package main

import (
	"context"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/carteiro/carteiro/services/internal/testenv"
)

// TestMigrateCommand: `api migrate` (the Kubernetes init container) creates
// the schema and exits; several started at once, as the init containers of
// several replicas are, all succeed and apply each migration once.
func TestMigrateCommand(t *testing.T) {
	db := testenv.NewDatabase(t)
	env := map[string]string{
		"DB_HOST": db.Host, "DB_PORT": strconv.Itoa(db.Port), "DB_NAME": db.Name,
		"DB_USER": db.User, "DB_SSLMODE": db.SSLMode,
		// Never contacted by migrate: nothing listens there.
		"REDIS_ADDR": "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)),
	}
	const replicas = 3
	var wg sync.WaitGroup
	errs := make([]error, replicas)
	for i := range replicas {
		wg.Go(func() {
			errs[i] = run(context.Background(), []string{"api", "migrate"}, testenv.Env(env), io.Discard)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("migrate %d: got %v, want nil", i, err)
		}
	}
	conn, err := pgx.Connect(context.Background(), db.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var applied, distinct int
	if err := conn.QueryRow(context.Background(),
		`SELECT count(*), count(DISTINCT version_id) FROM goose_db_version WHERE version_id > 0`).Scan(&applied, &distinct); err != nil {
		t.Fatal(err)
	}
	if applied == 0 || applied != distinct {
		t.Errorf("goose_db_version: got %d rows for %d versions, want each migration once", applied, distinct)
	}
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM emails`).Scan(new(int)); err != nil {
		t.Errorf("emails table after migrate: %v", err)
	}
}

// TestMigrateCommandUnreachableDatabase: a database that cannot be reached
// fails the command (so the init container fails and the pod does not
// start), naming the database but not its password.
func TestMigrateCommandUnreachableDatabase(t *testing.T) {
	port := testenv.FreePort(t)
	env := map[string]string{
		"DB_HOST": "127.0.0.1", "DB_PORT": strconv.Itoa(port), "DB_PASSWORD": "s3cret-not-logged",
		"DB_CONNECT_TIMEOUT": "1s", "DB_SSLMODE": "disable",
	}
	err := run(context.Background(), []string{"api", "migrate"}, testenv.Env(env), io.Discard)
	if err == nil {
		t.Fatal("got nil, want an error")
	}
	if strings.Contains(err.Error(), "s3cret-not-logged") {
		t.Errorf("error leaks the password: %v", err)
	}
}
