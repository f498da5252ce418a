package main

import (
	"context"
	"encoding/json"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/carteiro/carteiro/services/internal/config"
	smtpmail "github.com/carteiro/carteiro/services/internal/mail"
	"github.com/carteiro/carteiro/services/internal/message"
	"github.com/carteiro/carteiro/services/internal/outbox"
	"github.com/carteiro/carteiro/services/internal/queue"
	"github.com/carteiro/carteiro/services/internal/store"
	"github.com/carteiro/carteiro/services/internal/telemetry"
	"github.com/carteiro/carteiro/services/internal/testenv"
)

// rig is a worker's world: a fresh database with the schema, a private
// Redis, the outbox relay the api would run, and a scripted SMTP server.
type rig struct {
	t      *testing.T
	db     config.Postgres
	store  *store.Store
	redis  *testenv.Redis
	smtp   *testenv.SMTPServer
	stream string
	env    map[string]string
	// logs holds every worker's log, also written to the test's output.
	logs *testenv.LogBuffer
}

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{t: t, db: testenv.NewDatabase(t), redis: testenv.StartRedis(t), smtp: testenv.StartSMTP(t),
		stream: "carteiro:test:" + strconv.FormatInt(time.Now().UnixNano(), 36), logs: testenv.NewLogBuffer(t)}
	ctx := context.Background()
	var err error
	r.store, err = store.Open(ctx, r.db, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.store.Close)
	if err := r.store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	r.env = map[string]string{
		"DB_HOST": r.db.Host, "DB_PORT": strconv.Itoa(r.db.Port), "DB_NAME": r.db.Name,
		"DB_USER": r.db.User, "DB_SSLMODE": r.db.SSLMode,
		"REDIS_ADDR": r.redis.Addr, "REDIS_STREAM": r.stream,
		"SMTP_HOST": "127.0.0.1", "SMTP_PORT": r.smtp.Port(), "SMTP_TIMEOUT": "1s",
		"INTERNAL_ADDR": "127.0.0.1:0", "WORKER_CONCURRENCY": "2", "WORKER_LEASE": "2s",
		"MAX_ATTEMPTS": "3", "RETRY_BASE_DELAY": "50ms", "RETRY_MAX_DELAY": "200ms",
		"MAIL_FROM": "carteiro@example.test", "MAIL_TO": "contato@example.test",
	}
	return r
}

// startRelay runs the api's outbox relay until the test ends.
func (r *rig) startRelay() {
	ctx, cancel := context.WithCancel(context.Background())
	relay := outbox.New(outbox.Deps{
		Store: r.store, Queue: queue.New(r.redis.Client(), r.stream, "carteiro-workers"), Log: testenv.Logger(r.t),
		Config: config.Outbox{SweepInterval: 50 * time.Millisecond, BatchSize: 100, RepublishAfter: time.Minute},
	})
	done := make(chan struct{})
	go func() { relay.Run(ctx); close(done) }()
	r.t.Cleanup(func() { cancel(); <-done })
}

// startWorker runs the worker; stop cancels it (as SIGTERM does) and
// returns run's error.
func (r *rig) startWorker(name string, opts ...telemetry.Option) (stop func() error) {
	env := map[string]string{"WORKER_NAME": name}
	for k, v := range r.env {
		env[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"worker"}, testenv.Env(env), r.logs, opts...) }()
	stopped := false
	var result error
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			result = <-done
		}
		return result
	}
	r.t.Cleanup(func() { stop() })
	return stop
}

func (r *rig) insert(assunto, mensagem string) string {
	r.t.Helper()
	e, err := r.store.Insert(context.Background(), message.Input{Assunto: assunto, Mensagem: mensagem}, "", "")
	if err != nil {
		r.t.Fatal(err)
	}
	return e.ID
}

func (r *rig) get(id string) store.Email {
	r.t.Helper()
	e, err := r.store.Get(context.Background(), id)
	if err != nil {
		r.t.Fatal(err)
	}
	return e
}

func (r *rig) waitStatus(id string, want message.Status) store.Email {
	r.t.Helper()
	var e store.Email
	for range 300 {
		if e = r.get(id); e.Status == want {
			return e
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.t.Fatalf("message %s: status %s (attempts %d, last error %q), want %s", id, e.Status, e.Attempts, e.LastError, want)
	return e
}

func header(t *testing.T, m *mail.Message, name string) string {
	t.Helper()
	v, err := new(mime.WordDecoder).DecodeHeader(m.Header.Get(name))
	if err != nil {
		t.Fatalf("decode %s: %v", name, err)
	}
	return v
}

func TestDeliversMessageIntact(t *testing.T) {
	r := newRig(t)
	r.startRelay()
	r.startWorker("w1")
	assunto := `Olá, "mundo" <b>&</b> ção 🙂`
	mensagem := "Linha 1\nLinha 2: <script>alert('x')</script> ' OR 1=1; --\n\tfim é"
	id := r.insert(assunto, mensagem)
	e := r.waitStatus(id, message.StatusSent)
	if e.Attempts != 1 || e.SentAt == nil {
		t.Errorf("sent row: got attempts %d sent_at %v, want 1 and a time", e.Attempts, e.SentAt)
	}
	msgs := r.smtp.Messages()
	if len(msgs) != 1 {
		t.Fatalf("mails: got %d, want 1", len(msgs))
	}
	m := msgs[0]
	if got, want := m.Header.Get("Message-Id"), "<"+id+"@example.test>"; got != want {
		t.Errorf("Message-ID: got %q, want %q", got, want)
	}
	if got := "<" + e.MessageID + ">"; got != m.Header.Get("Message-Id") {
		t.Errorf("row message_id: got %q, want %q", got, m.Header.Get("Message-Id"))
	}
	if got := header(t, m, "Subject"); got != assunto {
		t.Errorf("Subject: got %q, want %q", got, assunto)
	}
	if got := m.Header.Get("To"); !strings.Contains(got, "contato@example.test") {
		t.Errorf("To: got %q, want the configured recipient", got)
	}
	if got := m.Header.Get("From"); !strings.Contains(got, "carteiro@example.test") {
		t.Errorf("From: got %q, want the configured sender", got)
	}
	body := decodeBody(t, m)
	if body != mensagem && body != mensagem+"\n" && body != strings.ReplaceAll(mensagem, "\n", "\r\n") {
		t.Errorf("body: got %q, want %q", body, mensagem)
	}
}

// At the default LOG_LEVEL (info) each delivery leaves one line, as a
// mail server logs its status=sent: the message, the attempt, the reply's
// code (never its text) and the trace id the README's step 5 greps for.
func TestSendIsLoggedAtInfo(t *testing.T) {
	r := newRig(t)
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	id := r.insert("logged", "once")
	q := queue.New(r.redis.Client(), r.stream, "carteiro-workers")
	carrier := map[string]string{"traceparent": "00-" + traceID + "-00f067aa0ba902b7-01"}
	if err := q.Add(context.Background(), queue.Entry{MessageID: id, Carrier: carrier}); err != nil {
		t.Fatal(err)
	}
	r.startWorker("w1")
	r.waitStatus(id, message.StatusSent)
	var sent []map[string]any
	for _, line := range strings.Split(r.logs.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == "worker: sent" {
			sent = append(sent, rec)
		}
	}
	if len(sent) != 1 {
		t.Fatalf("\"worker: sent\" lines: got %d, want 1\n%s", len(sent), r.logs)
	}
	want := map[string]any{
		"level": "INFO", "message_id": id, "attempt": 1.0, "token": 1.0,
		"smtp_reply_code": float64(smtpmail.ReplyAccepted), "trace_id": traceID,
	}
	for k, v := range want {
		if got := sent[0][k]; got != v {
			t.Errorf("%s: got %v, want %v", k, got, v)
		}
	}
	// go-smtp's reply to the final dot is "250 2.0.0 OK: queued".
	for k, v := range sent[0] {
		if s, ok := v.(string); ok && strings.Contains(s, "OK: queued") {
			t.Errorf("%s: got %q, which carries the relay's reply text", k, s)
		}
	}
}

func decodeBody(t *testing.T, m *mail.Message) string {
	t.Helper()
	var rd io.Reader = m.Body
	if strings.EqualFold(m.Header.Get("Content-Transfer-Encoding"), "quoted-printable") {
		rd = quotedprintable.NewReader(rd)
	}
	b, err := io.ReadAll(rd)
	if err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(string(b), "\r\n", "\n")
}

func TestTransientFailureIsRetriedThenSent(t *testing.T) {
	r := newRig(t)
	r.smtp.Reply(func(n int) error {
		if n <= 2 {
			return testenv.Error(451, "4.3.0 try again later")
		}
		return nil
	})
	r.startRelay()
	r.startWorker("w1")
	id := r.insert("retry", "me")
	e := r.waitStatus(id, message.StatusSent)
	if e.Attempts != 3 {
		t.Errorf("attempts: got %d, want 3", e.Attempts)
	}
	if !strings.Contains(e.LastError, "451") {
		t.Errorf("last_error: got %q, want the 451 reply", e.LastError)
	}
	if n := len(r.smtp.Messages()); n != 1 {
		t.Errorf("mails accepted: got %d, want 1", n)
	}
}

func TestTransientFailuresExhaustAttempts(t *testing.T) {
	r := newRig(t)
	r.smtp.Reply(func(int) error { return testenv.Error(421, "4.7.0 busy") })
	r.startRelay()
	r.startWorker("w1")
	id := r.insert("always", "busy")
	e := r.waitStatus(id, message.StatusDead)
	if e.Attempts != 3 {
		t.Errorf("attempts: got %d, want MAX_ATTEMPTS=3", e.Attempts)
	}
	if !strings.Contains(e.LastError, "421") {
		t.Errorf("last_error: got %q, want the 421 reply", e.LastError)
	}
}

func TestPermanentFailureIsDeadThenReprocessed(t *testing.T) {
	r := newRig(t)
	r.smtp.Reply(func(n int) error {
		if n == 1 {
			return testenv.Error(550, "5.1.1 mailbox unavailable")
		}
		return nil
	})
	r.startRelay()
	r.startWorker("w1")
	id := r.insert("permanent", "failure")
	e := r.waitStatus(id, message.StatusDead)
	if e.Attempts != 1 {
		t.Errorf("attempts: got %d, want 1 (no retry after a 5xx)", e.Attempts)
	}
	if !strings.Contains(e.LastError, "550") || !strings.Contains(e.LastError, "mailbox unavailable") {
		t.Errorf("last_error: got %q, want the 550 reply", e.LastError)
	}

	var out strings.Builder
	if err := run(context.Background(), []string{"worker", "reprocess", "--dead"}, testenv.Env(r.env), &out); err != nil {
		t.Fatalf("reprocess: %v", err)
	}
	if !strings.Contains(out.String(), "re-queued 1 message") {
		t.Errorf("reprocess output: got %q, want it to count 1", out.String())
	}
	e = r.waitStatus(id, message.StatusSent)
	if e.Attempts != 1 {
		t.Errorf("attempts after reprocess: got %d, want 1 (counting restarts)", e.Attempts)
	}
}

func TestReprocessRejectsBadArguments(t *testing.T) {
	r := newRig(t)
	for _, args := range [][]string{
		{},
		{"--id", "not-a-uuid"},
		{"--dead", "--id", "0193a1b2-0000-7000-8000-000000000000"},
	} {
		err := run(context.Background(), append([]string{"worker", "reprocess"}, args...), testenv.Env(r.env), io.Discard)
		if err == nil {
			t.Errorf("reprocess %v: got nil error, want one", args)
		}
	}
}

func TestUnreachableRelayIsTransient(t *testing.T) {
	r := newRig(t)
	r.env["SMTP_PORT"] = strconv.Itoa(testenv.FreePort(t)) // nobody listens
	r.env["RETRY_BASE_DELAY"] = "1h"
	r.env["RETRY_MAX_DELAY"] = "1h"
	r.startRelay()
	r.startWorker("w1")
	id := r.insert("nobody", "home")
	e := r.waitStatus(id, message.StatusFailed)
	if e.Attempts != 1 || e.NextAttemptAt == nil || time.Until(*e.NextAttemptAt) < 10*time.Minute {
		t.Errorf("failed row: got attempts %d next %v, want 1 and a retry about an hour away", e.Attempts, e.NextAttemptAt)
	}
	if !strings.Contains(e.LastError, "connect") {
		t.Errorf("last_error: got %q, want the connection error", e.LastError)
	}
}

// On SIGTERM the worker stops reading, finishes the send in flight and
// returns nil; what arrives afterwards waits for the next worker.
func TestShutdownFinishesInFlightSend(t *testing.T) {
	r := newRig(t)
	release := make(chan struct{})
	r.smtp.Reply(func(int) error { <-release; return nil })
	r.startRelay()
	stop := r.startWorker("w1")
	first := r.insert("in", "flight")
	for r.smtp.Attempts() == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	time.Sleep(100 * time.Millisecond)
	if e := r.get(first); e.Status != message.StatusSending {
		t.Errorf("while SMTP holds DATA: got %s, want sending", e.Status)
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Fatalf("run after SIGTERM: got %v, want nil", err)
	}
	if e := r.get(first); e.Status != message.StatusSent {
		t.Errorf("in-flight message: got %s, want sent", e.Status)
	}
	second := r.insert("after", "stop")
	time.Sleep(300 * time.Millisecond)
	if e := r.get(second); e.Status != message.StatusQueued {
		t.Errorf("message published after the stop: got %s, want queued", e.Status)
	}
	r.startWorker("w2")
	r.waitStatus(second, message.StatusSent)
}

// A worker that dies after claiming a message leaves a pending entry and a
// row in sending; another worker takes both over after the lease.
func TestRecoversWorkOfCrashedWorker(t *testing.T) {
	r := newRig(t)
	r.startRelay()
	id := r.insert("orphan", "message")
	ctx := context.Background()
	q := queue.New(r.redis.Client(), r.stream, "carteiro-workers")
	if err := q.EnsureGroup(ctx); err != nil {
		t.Fatal(err)
	}
	var entries []queue.Entry
	for len(entries) == 0 {
		var err error
		if entries, err = q.Read(ctx, "crashed", 1, 100*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok, err := r.store.Claim(ctx, id, id+"@example.test", 2*time.Second, 3); err != nil || !ok {
		t.Fatalf("claim as the crashed worker: ok %v err %v", ok, err)
	}
	// The crashed worker never acknowledges nor records anything.
	r.startWorker("survivor")
	e := r.waitStatus(id, message.StatusSent)
	if e.Attempts != 2 {
		t.Errorf("attempts: got %d, want 2 (one lost with the crashed worker)", e.Attempts)
	}
	if n := len(r.smtp.Messages()); n != 1 {
		t.Errorf("mails: got %d, want 1", n)
	}
}

// When Redis loses its data, the relay republishes from Postgres.
func TestStreamLossIsRepublished(t *testing.T) {
	r := newRig(t)
	r.startRelay()
	ids := []string{r.insert("a", "1"), r.insert("b", "2")}
	rdb := r.redis.Client()
	for {
		n, _ := rdb.XLen(context.Background(), r.stream).Result()
		if n == 2 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := rdb.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	r.startWorker("w1")
	for _, id := range ids {
		r.waitStatus(id, message.StatusSent)
	}
}

func TestHealthcheck(t *testing.T) {
	r := newRig(t)
	r.env["INTERNAL_ADDR"] = "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	if err := run(context.Background(), []string{"worker", "healthcheck"}, testenv.Env(r.env), io.Discard); err == nil {
		t.Errorf("healthcheck with no worker running: got nil, want an error")
	}
	r.startWorker("w1")
	var err error
	for range 100 {
		if err = run(context.Background(), []string{"worker", "healthcheck"}, testenv.Env(r.env), io.Discard); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("healthcheck with the worker running: got %v, want nil", err)
}

// A row left in sending whose stream entry is gone too (the worker died,
// then Redis lost its data) is released after the lease and sent.
func TestRecoversSendingRowWithoutEntry(t *testing.T) {
	r := newRig(t)
	r.startRelay()
	id := r.insert("orphan", "without entry")
	ctx := context.Background()
	rdb := r.redis.Client()
	for n, _ := rdb.XLen(ctx, r.stream).Result(); n == 0; n, _ = rdb.XLen(ctx, r.stream).Result() {
		time.Sleep(20 * time.Millisecond)
	}
	if _, ok, err := r.store.Claim(ctx, id, id+"@example.test", 2*time.Second, 3); err != nil || !ok {
		t.Fatalf("claim as the crashed worker: ok %v err %v", ok, err)
	}
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	r.startWorker("survivor")
	e := r.waitStatus(id, message.StatusSent)
	if e.Attempts != 2 {
		t.Errorf("attempts: got %d, want 2", e.Attempts)
	}
}
