package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/carteiro/carteiro/internal/devstack"
)

func TestMedianAndPercentile(t *testing.T) {
	if got := median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("median odd = %v, want 2", got)
	}
	if got := median([]float64{4, 1, 2, 3}); got != 2.5 {
		t.Errorf("median even = %v, want 2.5", got)
	}
	if got := median(nil); got != 0 {
		t.Errorf("median of none = %v, want 0", got)
	}
	s := []float64{10, 20, 30, 40, 50}
	for p, want := range map[float64]float64{0: 10, 50: 30, 100: 50, 90: 46} {
		if got := percentile(s, p); got != want {
			t.Errorf("percentile(%v) = %v, want %v", p, got, want)
		}
	}
	l := summarize([]float64{5, 1, 3})
	if l.Min != 1 || l.Max != 5 || l.P50 != 3 || l.Mean != 3 {
		t.Errorf("summarize = %+v", l)
	}
}

func TestLoadSettings(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	s, err := loadSettings(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if s.Duration.D() != 10*time.Second || s.N != 20000 || s.E2EDuration.D() != time.Minute || s.Rounds != 3 ||
		strings.Join(s.Modes, ",") != "off,on" || s.WorkerConcurrency != 8 || s.DBName != "carteiro_bench" {
		t.Errorf("defaults = %+v", s)
	}
	s, err = loadSettings(env(map[string]string{"BENCH_DURATION": "3s", "BENCH_N": "2000",
		"BENCH_E2E_DURATION": "10s", "BENCH_MODES": "on", "WORKER_CONCURRENCY": "6"}))
	if err != nil {
		t.Fatal(err)
	}
	if s.Duration.D() != 3*time.Second || s.N != 2000 || s.E2EDuration.D() != 10*time.Second ||
		strings.Join(s.Modes, ",") != "on" || s.WorkerConcurrency != 6 {
		t.Errorf("overrides = %+v", s)
	}
	for _, bad := range []map[string]string{
		{"BENCH_DURATION": "ten"},
		{"BENCH_N": "0"},
		{"BENCH_MODES": "maybe"},
		{"BENCH_ACCEPT_WORKER": "pause"},
		{"BENCH_PHASES": "drain"},
		{"BENCH_SMTP_SOURCE_WORKER_MESSAGE": "captured"},
		{"BENCH_PROFILE": "cpu"},
		{"BENCH_KEEP": "always"},
		{"DB_HOST": "10.0.0.5"},
		{"DB_HOST": "db.example"},
	} {
		if _, err := loadSettings(env(bad)); err == nil {
			t.Errorf("loadSettings(%v) accepted", bad)
		}
	}
	for v, want := range map[string]bool{"": true, "1": true, "on": true, "0": false, "off": false, "false": false} {
		s, err := loadSettings(env(map[string]string{"BENCH_SMTP_SOURCE_WORKER_MESSAGE": v}))
		if err != nil || s.WorkerMessage != want {
			t.Errorf("BENCH_SMTP_SOURCE_WORKER_MESSAGE=%q: got %v, %v, want %v", v, s.WorkerMessage, err, want)
		}
	}
	for v, want := range map[string]bool{"": false, "1": true, "yes": true, "0": false, "off": false} {
		s, err := loadSettings(env(map[string]string{"BENCH_PROFILE": v, "BENCH_KEEP": v}))
		if err != nil || s.Profile != want || s.Keep != want {
			t.Errorf("BENCH_PROFILE=BENCH_KEEP=%q: got %v, %v, %v, want %v", v, s.Profile, s.Keep, err, want)
		}
	}
	for _, phases := range []string{"all", "accept", "delivery"} {
		s, err := loadSettings(env(map[string]string{"BENCH_PHASES": phases}))
		if err != nil || s.Phases != phases {
			t.Errorf("BENCH_PHASES=%s: got %q, %v, want %q", phases, s.Phases, err, phases)
		}
	}
	for _, ok := range []string{"127.0.0.1", "localhost", "::1", "127.0.0.2"} {
		if _, err := loadSettings(env(map[string]string{"DB_HOST": ok})); err != nil {
			t.Errorf("DB_HOST=%s: %v", ok, err)
		}
	}
}

func TestParsePgbench(t *testing.T) {
	const out = `pgbench (15.20 (Debian 15.20-0+deb12u1))
transaction type: /tmp/x/pgbench-insert.sql
scaling factor: 1
query mode: prepared
number of clients: 16
number of threads: 2
maximum number of tries: 1
duration: 3 s
number of transactions actually processed: 38421
number of failed transactions: 0 (0.000%)
latency average = 1.239 ms
initial connection time = 12.345 ms
tps = 12917.283460 (without initial connection time)
`
	var r pgbenchRun
	parsePgbench(out, &r)
	if r.TPS != 12917.28346 || r.Transactions != 38421 || r.Failed != 0 || r.LatencyAvgMs != 1.239 {
		t.Errorf("parsed %+v", r)
	}
}

func TestScrapeDepth(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `# HELP carteiro_queue_depth Messages waiting.
# TYPE carteiro_queue_depth gauge
carteiro_queue_depth{state="dead"} 0
carteiro_queue_depth{state="failed"} 2
carteiro_queue_depth{state="lag"} 40
carteiro_queue_depth{state="pending"} 4
carteiro_queue_depth{state="queued"} 50
carteiro_queue_depth{state="sending"} 3
carteiro_queue_depth{state="stream"} 44 1700000000000
carteiro_outbox_unpublished 7
carteiro_outbox_published_total 900
`)
	}))
	defer srv.Close()
	m, err := scrapeDepth(context.Background(), srv.Client(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"dead": 0, "failed": 2, "lag": 40, "pending": 4, "queued": 50, "sending": 3,
		"stream": 44, "outbox_unpublished": 7, "waiting": 55}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, m[k], v, m)
		}
	}
	if len(m) != len(want) {
		t.Errorf("got %v, want %v", m, want)
	}
}

// TestDepthPollSamples polls a /metrics whose queue grows by one each
// scrape: every scrape's waiting is kept in order, timed from the start
// given, and the maxima are the last scrape's. It stops the poll once the
// fourth scrape reached the server (the poll scrapes one at a time, so the
// first three were kept), not after a sleep that a loaded machine could
// fill with fewer scrapes.
func TestDepthPollSamples(t *testing.T) {
	var mu sync.Mutex
	n := 0
	fourth := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		if n == 4 {
			close(fourth)
		}
		fmt.Fprintf(w, "carteiro_queue_depth{state=\"queued\"} %d\ncarteiro_queue_depth{state=\"sending\"} 1\n", n)
		mu.Unlock()
	}))
	defer srv.Close()
	start := time.Now()
	p := startDepthPoll(context.Background(), srv.URL, 5*time.Millisecond)
	select {
	case <-fourth:
	case <-time.After(time.Minute): // bounds a stuck test; not a timing assertion
		p.stop()
		t.Fatal("the poll never scraped four times")
	}
	m, scrapes := p.stop()
	s := p.since(start)
	if scrapes < 3 || len(s) != scrapes {
		t.Fatalf("got %d scrapes and %d samples, want at least 3 and as many samples", scrapes, len(s))
	}
	for i, x := range s {
		if x.Waiting != float64(i+2) || x.AtS < 0 || (i > 0 && x.AtS <= s[i-1].AtS) {
			t.Errorf("sample %d: got %+v, want waiting %d, after the one before", i, x, i+2)
		}
	}
	if got, want := m["waiting"], s[len(s)-1].Waiting; got != want {
		t.Errorf("max waiting: got %v, want %v", got, want)
	}
}

func TestJSONBodyIsValid(t *testing.T) {
	var v struct{ Assunto, Mensagem string }
	if err := json.Unmarshal([]byte(jsonBody(runPrefix("e2e", "on", 1), 42)), &v); err != nil {
		t.Fatal(err)
	}
	if v.Assunto != "bench e2e on r1 42" || v.Mensagem != benchText {
		t.Errorf("body = %+v", v)
	}
	if n := len([]rune(benchText)); n > 250 {
		t.Errorf("benchText has %d characters, the api takes 250", n)
	}
}

// smtpSink counts the messages it receives.
type smtpSink struct {
	mu       sync.Mutex
	subjects map[string]int
	sessions int
}

func (s *smtpSink) NewSession(*smtp.Conn) (smtp.Session, error) {
	s.mu.Lock()
	s.sessions++
	s.mu.Unlock()
	return &sinkSession{s}, nil
}

type sinkSession struct{ s *smtpSink }

func (*sinkSession) Reset()                               {}
func (*sinkSession) Logout() error                        { return nil }
func (*sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (*sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (ss *sinkSession) Data(r io.Reader) error {
	m, err := mail.ReadMessage(r)
	if err != nil {
		return err
	}
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	ss.s.subjects[m.Header.Get("Subject")]++
	return nil
}

// startSMTPSink serves an SMTP sink on a loopback port until the test ends.
func startSMTPSink(t *testing.T) (*smtpSink, string) {
	t.Helper()
	sink := &smtpSink{subjects: map[string]int{}}
	srv := smtp.NewServer(sink)
	srv.Domain = "localhost"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sink, ln.Addr().String()
}

func TestSMTPCeilingSendsEveryMessageOnReusedConnections(t *testing.T) {
	sink, addr := startSMTPSink(t)

	r, err := runSMTPCeiling(context.Background(), addr, "bench smtp test r1 ", 50, 3, 1)
	if err != nil {
		t.Fatal(err)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.subjects) != 50 || r.Messages != 50 || r.Errors != 0 || r.Rate <= 0 {
		t.Errorf("sink has %d distinct subjects, run %+v", len(sink.subjects), r)
	}
	if sink.sessions != 3 {
		t.Errorf("%d SMTP sessions, want 3 (one per connection, reused)", sink.sessions)
	}
	if r.AvgBytes < len(benchText) {
		t.Errorf("average message size %d is smaller than the body", r.AvgBytes)
	}
}

func TestComposeMailLikeTheWorker(t *testing.T) {
	b, err := composeMail("bench smtp off r1 ", 7)
	if err != nil {
		t.Fatal(err)
	}
	m, err := mail.ReadMessage(strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	for h, want := range map[string]string{"Subject": "bench smtp off r1 7", "From": "<" + mailFrom + ">",
		"To": "<" + mailTo + ">", "User-Agent": "carteiro"} {
		if got := m.Header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	if id := m.Header.Get("Message-Id"); !strings.HasSuffix(id, "@carteiro.localhost>") {
		t.Errorf("Message-ID = %q", id)
	}
}

// TestAcceptLua runs the real wrk with accept.lua against a stand-in api,
// in each variant: every request must be a unique valid message posted as
// the page posts it (path, Content-Type, Accept, body encoding), with its
// own Idempotency-Key exactly when the variant has one, and the counts wrk
// reports must match what the server answered.
func TestAcceptLua(t *testing.T) {
	need(t, "wrk", "apt-get install wrk (scripts/ci-deps.sh installs it)")
	for _, tc := range []struct {
		variant, path, contentType, accept string
		key                                bool
	}{
		{"json", "/api/messages", "application/json", "application/json", false},
		{"json+key", "/api/messages", "application/json", "application/json", true},
		{"form", "/api", "application/x-www-form-urlencoded", "text/html", false},
		{"form+key", "/api", "application/x-www-form-urlencoded", "text/html", true},
	} {
		t.Run(tc.variant, func(t *testing.T) {
			var mu sync.Mutex
			seen, keys := map[string]bool{}, map[string]bool{}
			var answered, rejected, dup, wrongKey int
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var v struct{ Assunto, Mensagem string }
				var err error
				if tc.contentType == "application/json" {
					err = json.NewDecoder(r.Body).Decode(&v)
				} else if err = r.ParseForm(); err == nil {
					v.Assunto, v.Mensagem = r.PostForm.Get("assunto"), r.PostForm.Get("mensagem")
				}
				key := r.Header.Get("Idempotency-Key")
				mu.Lock()
				defer mu.Unlock()
				answered++
				if r.Method != http.MethodPost || r.URL.Path != tc.path ||
					r.Header.Get("Content-Type") != tc.contentType || !strings.HasPrefix(r.Header.Get("Accept"), tc.accept) ||
					err != nil || v.Mensagem != benchText || !strings.HasPrefix(v.Assunto, "bench accept c4 off r1 ") {
					rejected++
					w.WriteHeader(http.StatusBadRequest)
					return
				}
				if seen[v.Assunto] {
					dup++
				}
				seen[v.Assunto] = true
				switch {
				case !tc.key && key != "":
					wrongKey++
				case tc.key && (len(key) < 3 || key[0] != '"' || key[len(key)-1] != '"' || strings.ContainsAny(key[1:len(key)-1], "\" \\")):
					wrongKey++
				case tc.key && keys[key]:
					wrongKey++
				}
				keys[key] = true
				if answered%10 == 0 {
					rejected++
					w.WriteHeader(http.StatusServiceUnavailable)
					return
				}
				w.WriteHeader(http.StatusAccepted)
			}))
			defer srv.Close()

			s, _ := loadSettings(func(string) string { return "" })
			r, err := runAccept(context.Background(), s, srv.URL, t.TempDir(),
				runPrefix("accept c4", "off", 1), tc.variant, 4, 1, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if dup > 0 || wrongKey > 0 {
				t.Errorf("%d repeated subjects, %d missing, repeated or unexpected keys", dup, wrongKey)
			}
			// wrk stops with up to one request per connection unanswered, which
			// the server may still have answered.
			if missed := int64(answered) - (r.Accepted + r.Non202); missed < 0 || missed > 4 ||
				int64(rejected)-r.Non202 < 0 || int64(rejected)-r.Non202 > 4 || r.Accepted == 0 {
				t.Errorf("wrk says %d accepted + %d not 202, the server answered %d (%d not 202)",
					r.Accepted, r.Non202, answered, rejected)
			}
			if r.RPS <= 0 || r.LatencyMs.P99 <= 0 || r.LatencyMs.Max < r.LatencyMs.P50 || r.Variant != tc.variant {
				t.Errorf("figures %+v", r)
			}
		})
	}
	s, _ := loadSettings(func(string) string { return "" })
	if _, err := runAccept(context.Background(), s, "http://127.0.0.1:1", t.TempDir(), "p", "xml", 4, 1, time.Second); err == nil {
		t.Errorf("runAccept accepted the variant xml")
	}
}

// need skips, or fails in CI, when program is missing.
func need(t *testing.T, program, hint string) {
	t.Helper()
	if _, err := exec.LookPath(program); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing (%s): %v", program, hint, err)
		}
		t.Skipf("%s is missing (%s): %v", program, hint, err)
	}
}

// TestSMTPSourceSendsEveryMessageOnReusedSessions runs the real
// smtp-source into a sink: every message arrives whole, over as many
// sessions as asked.
func TestSMTPSourceSendsEveryMessageOnReusedSessions(t *testing.T) {
	need(t, smtpSourceBin(), "apt-get install postfix; scripts/ci-deps.sh installs it")
	sink, addr := startSMTPSink(t)

	r, err := runSMTPSource(context.Background(), addr, t.TempDir(), "bench smtp-source test r1 ", 40, 3, 1)
	if err != nil {
		t.Fatal(err)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if got := sink.subjects["bench smtp-source test r1 0"]; got != 40 || len(sink.subjects) != 1 {
		t.Errorf("sink got %v, want the one subject 40 times", sink.subjects)
	}
	if sink.sessions != 3 {
		t.Errorf("%d SMTP sessions, want 3 (-s 3 -d: each reused)", sink.sessions)
	}
	if r.Rate <= 0 || r.Errors != 0 || r.AvgBytes < len(benchText) || !strings.Contains(r.Command, "-d -s 3 -m 40") {
		t.Errorf("run %+v", r)
	}
}

// TestHTTPCeilingThroughTheStacksNginx renders the stack's nginx in front
// of the no-op handler and loads it with wrk, as phase 2's ceiling does.
func TestHTTPCeilingThroughTheStacksNginx(t *testing.T) {
	need(t, nginxBin(), "apt-get install nginx")
	need(t, "wrk", "apt-get install wrk")
	repo, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg, err := devstack.Load(repo, []string{"DEV_DIR=" + dir, "RATE_LIMIT=0"})
	if err != nil {
		t.Fatal(err)
	}
	h, err := startHTTPCeiling(context.Background(), cfg, dir, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer h.stop()
	s, _ := loadSettings(func(string) string { return "" })
	r, err := runAccept(context.Background(), s, h.url(), dir, runPrefix("noop", "off", 1), "json", 4, 1, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r.Accepted == 0 || r.Errors() != 0 || r.RPS <= 0 {
		t.Errorf("run %+v", r)
	}
	h.stop()
	if answers(context.Background(), "http://"+h.addr+"/nginx-health") {
		t.Errorf("nginx still answers after stop")
	}
	h.nginx = nil // stopped once
}

func TestParseCommandStats(t *testing.T) {
	info := "# Commandstats\r\ncmdstat_xadd:calls=12,usec=30,usec_per_call=2.50,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_xack:calls=3,usec=9,usec_per_call=3.00,rejected_calls=0,failed_calls=0\r\n"
	got := parseCommandStats(info)
	if got["xadd"] != 12 || got["xack"] != 3 || len(got) != 2 {
		t.Errorf("got %v, want xadd 12, xack 3", got)
	}
	before := storeWork{PgCommits: 10, PgHOTUpdated: 5, PgWALBytes: 1000, Redis: map[string]float64{"xadd": 2}}
	after := storeWork{PgCommits: 30, PgHOTUpdated: 15, PgWALBytes: 6000, Redis: map[string]float64{"xadd": 12, "xack": 10}}
	pm := after.perMessage(before, 10)
	if pm.PgCommits != 2 || pm.PgHOTUpdated != 1 || pm.PgWALBytes != 500 || pm.Redis["xadd"] != 1 || pm.Redis["xack"] != 1 {
		t.Errorf("per message = %+v, want 2 commits, 1 HOT update, 500 WAL bytes, xadd 1, xack 1", pm)
	}
	// Backend 1 ran on, 2 exited, 3 started: only what ran meanwhile counts.
	before.backends = map[int]float64{1: 5, 2: 7}
	after.backends = map[int]float64{1: 6.5, 3: 2.5}
	if pm := after.perMessage(before, 10); pm.PgCPUSeconds != 0.4 {
		t.Errorf("backend CPU per message: got %v, want 0.4", pm.PgCPUSeconds)
	}
}

func TestProcessCPU(t *testing.T) {
	if cpu, err := processCPU(os.Getpid()); err != nil || cpu < 0 {
		t.Errorf("own process: got %v, %v, want a CPU time", cpu, err)
	}
	if _, err := processCPU(-1); err == nil {
		t.Error("pid -1: got nil, want an error")
	}
}
