package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/carteiro/carteiro/services/internal/config"
	"github.com/carteiro/carteiro/services/internal/telemetry"
	"github.com/carteiro/carteiro/services/internal/testenv"
)

// apiProcess is the api started by run, on ports the kernel picked.
type apiProcess struct {
	URL      string // public listener
	Internal string // internal listener
	db       config.Postgres
	stream   string
	log      *listenWatcher
	// stop stops run (SIGTERM) and returns what it returned.
	stop func() error
}

// listenWatcher passes the api's log to the test output and picks the
// addresses of its listeners out of it.
type listenWatcher struct {
	t     *testing.T
	mu    sync.Mutex
	buf   bytes.Buffer
	all   strings.Builder
	addrs map[string]string
	ready chan struct{}
}

func (l *listenWatcher) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.t.Output().Write(p)
	l.all.Write(p)
	l.buf.Write(p)
	for {
		line, err := l.buf.ReadBytes('\n')
		if err != nil {
			l.buf.Write(line)
			break
		}
		var rec struct{ Msg, Listener, Addr string }
		if json.Unmarshal(line, &rec) == nil && rec.Msg == "listening" {
			l.addrs[rec.Listener] = rec.Addr
			if len(l.addrs) == 2 {
				close(l.ready)
			}
		}
	}
	return len(p), nil
}

// count is how many lines of the api's log so far contain s.
func (l *listenWatcher) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.all.String(), s)
}

// startAPI runs the api on port 0 against db and the Redis at redisAddr,
// and stops it when the test ends.
func startAPI(t *testing.T, db config.Postgres, redisAddr string, opts ...telemetry.Option) *apiProcess {
	t.Helper()
	return startAPIWith(t, db, redisAddr, nil, opts...)
}

// startAPIWith is startAPI with more environment variables (or others'
// values).
func startAPIWith(t *testing.T, db config.Postgres, redisAddr string, vars map[string]string, opts ...telemetry.Option) *apiProcess {
	t.Helper()
	stream := "carteiro:test:" + strconv.FormatInt(time.Now().UnixNano(), 36)
	env := map[string]string{
		"HTTP_ADDR": "127.0.0.1:0", "INTERNAL_ADDR": "127.0.0.1:0",
		"DB_HOST": db.Host, "DB_PORT": strconv.Itoa(db.Port), "DB_NAME": db.Name,
		"DB_USER": db.User, "DB_SSLMODE": db.SSLMode,
		"REDIS_ADDR": redisAddr, "REDIS_STREAM": stream,
		"OUTBOX_SWEEP_INTERVAL": "100ms",
		// No proxy holds connections here: stop at once (TestStopDrains
		// sets its own).
		"SHUTDOWN_DRAIN": "0s",
	}
	maps.Copy(env, vars)
	w := &listenWatcher{t: t, addrs: map[string]string{}, ready: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"api"}, testenv.Env(env), w, opts...) }()
	var stopped error
	stop := sync.OnceFunc(func() {
		cancel()
		stopped = <-done
	})
	t.Cleanup(func() {
		stop()
		if stopped != nil {
			t.Errorf("run returned %v", stopped)
		}
	})
	select {
	case <-w.ready:
	case err := <-done:
		t.Fatalf("run returned before listening: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("api did not start listening")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return &apiProcess{URL: "http://" + w.addrs["public"], Internal: "http://" + w.addrs["internal"], db: db, stream: stream, log: w,
		stop: func() error { stop(); return stopped }}
}

// post sends body with the given headers to path.
func (a *apiProcess) post(t *testing.T, path, contentType, body string, headers ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, a.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return do(t, req)
}

func (a *apiProcess) get(t *testing.T, url string, headers ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return do(t, req)
}

// client gives up on a hung request, so a hang fails instead of blocking.
var client = &http.Client{Timeout: 20 * time.Second}

func do(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return res, string(b)
}

// countRows counts the emails table's rows.
func (a *apiProcess) countRows(t *testing.T) int {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), a.db.URL())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM emails").Scan(&n); err != nil {
		t.Fatalf("count: %v", err)
	}
	return n
}

// row returns one message's stored fields.
func (a *apiProcess) row(t *testing.T, id string) (assunto, mensagem, status, traceparent string) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), a.db.URL())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(context.Background())
	err = conn.QueryRow(context.Background(),
		"SELECT assunto, mensagem, status, coalesce(traceparent, '') FROM emails WHERE id = $1", id).
		Scan(&assunto, &mensagem, &status, &traceparent)
	if err != nil {
		t.Fatalf("row %s: %v", id, err)
	}
	return
}

// exec runs one statement on the api's database.
func (a *apiProcess) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), a.db.URL())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// queryRow runs one query on the api's database and scans its row.
func (a *apiProcess) queryRow(t *testing.T, sql string, args []any, dest ...any) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), a.db.URL())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(context.Background(), sql, args...).Scan(dest...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func decodeBody[T any](t *testing.T, body string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
	return v
}

func jsonBody(assunto, mensagem string) string {
	b, _ := json.Marshal(map[string]string{"assunto": assunto, "mensagem": mensagem})
	return string(b)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 300; i++ {
		if cond() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("gave up waiting for %s", what)
}
