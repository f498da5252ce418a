package config

import "time"

// API is the configuration of the api process.
type API struct {
	LogLevel string
	// HTTPAddr is the public listener that nginx proxies to.
	HTTPAddr string
	// InternalAddr serves health and metrics; it is never proxied.
	InternalAddr string
	Postgres     Postgres
	Redis        Redis
	Outbox       Outbox
	// JaegerURL, when set, is the Jaeger UI the pages link trace ids to:
	// an http(s) URL, or an absolute path on the page's own origin.
	JaegerURL string
	// GroupCommit batches concurrent inserts into shared transactions.
	GroupCommit GroupCommit
	// PProf serves /debug/pprof/ on the internal port.
	PProf bool
	// ShutdownDrain is the longest the api waits, after SIGTERM, for the
	// proxy to let go of its keep-alive connections (answers meanwhile
	// close theirs; see services/api/drain.go) before it closes the ones
	// left. It must exceed nginx's upstream keepalive_timeout.
	ShutdownDrain time.Duration
	// IncomingTraceContext is what a request's traceparent does
	// (INCOMING_TRACE_CONTEXT): TraceContextLink (the default) or
	// TraceContextJoin.
	IncomingTraceContext string
	// ShutdownDelay is how long the api, after SIGTERM, keeps accepting
	// connections (answering each with "Connection: close") before it
	// closes its listener: for load balancers that learn of a stopping
	// process on their own and are not told to wait otherwise. Kubernetes
	// has its own wait, before SIGTERM (the kubelet's preStop sleep, which
	// the manifests use), so its api keeps this 0. 0 closes the listener
	// at once, which nginx with several apis in its upstream prefers.
	ShutdownDelay time.Duration
}

// The values of INCOMING_TRACE_CONTEXT.
const (
	// TraceContextLink starts a new trace for every request and links the
	// caller's trace context, if any: a client decides neither the trace a
	// request joins nor whether it is recorded.
	TraceContextLink = "link"
	// TraceContextJoin makes the request's span a child of the incoming
	// trace context, sampled flag included. Only for an api that nothing
	// but a trusted edge reaches, one that starts every trace itself
	// (nginx's OpenTelemetry module with otel_trace_context inject, in the
	// compose observability overlay).
	TraceContextJoin = "join"
)

// GroupCommit tunes the batching of inserts.
type GroupCommit struct {
	// Flushers is the number of transactions in flight at once; 0 turns
	// group commit off (one transaction per message). The default, 2, was
	// measured against 1 and 4 in make bench's accept phase (bench/README.md,
	// 2026-12-01): 2 took 1.09 to 1.26 times the rate of 4 at 16
	// connections and 1.21 at 64, for 10 to 33 % less CPU a request
	// (Postgres' share −26 to −44 %: fewer, larger transactions); 1 took
	// 6 to 13 % more than 2 at 16 connections, but with it one transaction
	// stuck on its own connection (a COMMIT in doubt after its connection
	// broke, a hung connection, a batch retried row by row) stops all
	// intake, while with 2 the other flusher goes on (from the code; a
	// stall of the whole server, such as a slow WAL flush, holds both).
	Flushers int
	// MaxBatch is the most rows in one transaction.
	MaxBatch int
}

// Outbox tunes the relay that copies committed messages to the stream.
type Outbox struct {
	// SweepInterval is how often the relay looks for rows to publish
	// besides being woken after each commit.
	SweepInterval time.Duration
	// BatchSize is the most rows published in one transaction.
	BatchSize int
	// WakeDelay is how long the relay waits after a commit wakes it
	// before it publishes, so that the commits of that moment share one
	// publishing transaction (0: publish at once).
	WakeDelay time.Duration
	// RepublishAfter is how long a published but untouched message waits
	// before it is published again, in case the stream lost it.
	RepublishAfter time.Duration
}

// APIShutdownTimeout is how long the api, once its listener is closed and
// its keep-alive connections drained, waits for the requests still in
// flight (http.Server.Shutdown) before it returns.
const APIShutdownTimeout = 10 * time.Second

// StopTime is the longest the api takes from SIGTERM to exit:
// ShutdownDelay, then ShutdownDrain, then APIShutdownTimeout. A
// supervisor's grace period (compose's stop_grace_period; Kubernetes'
// terminationGracePeriodSeconds, which counts a preStop hook's time too)
// must exceed it, or the requests in flight are cut off by SIGKILL.
func (c API) StopTime() time.Duration {
	return c.ShutdownDelay + c.ShutdownDrain + APIShutdownTimeout
}

// WriteTimeout is the api's http.Server WriteTimeout, the time a request
// has for its answer; nginx's proxy_read_timeout is the same 15 s.
const WriteTimeout = 15 * time.Second

// requestQueryTimeouts is how many DB_QUERY_TIMEOUTs a request's database
// work may take (services/internal/store): one waiting for a group commit
// flusher, one for its batch's transaction, one more for its row retried
// alone when another row failed the batch, and, when its COMMIT is in
// doubt, statement_timeout (4 of them) and one more to learn the outcome
// (resolveCommit).
const requestQueryTimeouts = 8

// answerMargin is the part of WriteTimeout kept for what is not the
// store's: the write deadline starts when the request's headers are read,
// before the store is reached, and the answer must still be written after
// the store returns.
const answerMargin = time.Second

// maxQueryTimeout bounds the api's DB_QUERY_TIMEOUT so that a request
// whose COMMIT is in doubt still learns its outcome and writes it within
// WriteTimeout: requestQueryTimeouts × it ≤ WriteTimeout − answerMargin
// (1.75 s). At WriteTimeout / requestQueryTimeouts exactly, such a request
// would outlive the deadline and get nginx's 504 instead of its outcome.
const maxQueryTimeout = (WriteTimeout - answerMargin) / requestQueryTimeouts

// LoadAPI reads the api's configuration through getenv.
func LoadAPI(getenv func(string) string) (API, error) {
	r := &reader{getenv: getenv}
	c := API{
		LogLevel:     r.oneOf("LOG_LEVEL", "info", "debug", "info", "warn", "error"),
		HTTPAddr:     r.addr("HTTP_ADDR", "127.0.0.1:8081", 0),
		InternalAddr: r.addr("INTERNAL_ADDR", "127.0.0.1:9101", 0),
		Postgres:     readPostgres(r),
		Redis:        readRedis(r),
		JaegerURL:    r.linkURL("JAEGER_UI_URL", ""),
		GroupCommit: GroupCommit{
			Flushers: r.int("GROUP_COMMIT_FLUSHERS", 2, 0, 64),
			MaxBatch: r.int("GROUP_COMMIT_MAX_BATCH", 128, 1, 5000),
		},
		PProf:                r.bool("PPROF", false),
		ShutdownDrain:        r.duration("SHUTDOWN_DRAIN", 5*time.Second, 0),
		ShutdownDelay:        r.duration("SHUTDOWN_DELAY", 0, 0),
		IncomingTraceContext: r.oneOf("INCOMING_TRACE_CONTEXT", TraceContextLink, TraceContextLink, TraceContextJoin),
		Outbox: Outbox{
			SweepInterval:  r.duration("OUTBOX_SWEEP_INTERVAL", time.Second, 10*time.Millisecond),
			BatchSize:      r.int("OUTBOX_BATCH_SIZE", 200, 1, 10000),
			WakeDelay:      r.duration("OUTBOX_WAKE_DELAY", 5*time.Millisecond, 0),
			RepublishAfter: r.duration("OUTBOX_REPUBLISH_AFTER", 5*time.Minute, time.Second),
		},
	}
	if c.GroupCommit.Flushers >= c.Postgres.MaxConns {
		r.fail("DB_MAX_CONNS", "%d leaves no connection beside the GROUP_COMMIT_FLUSHERS=%d transactions (the relay, the health check and a COMMIT's outcome resolution, which asks on another connection while its flusher holds one, need their own)",
			c.Postgres.MaxConns, c.GroupCommit.Flushers)
	}
	if c.Postgres.QueryTimeout > maxQueryTimeout {
		r.fail("DB_QUERY_TIMEOUT", "%s is longer than %s: a request whose COMMIT is in doubt may take %d × DB_QUERY_TIMEOUT (queue, transaction, its row alone, statement_timeout = 4 ×, the outcome's resolution), which must fit the api's and nginx's %s less %s to reach the store and write the answer",
			c.Postgres.QueryTimeout, maxQueryTimeout, requestQueryTimeouts, WriteTimeout, answerMargin)
	}
	if c.Outbox.WakeDelay >= c.Outbox.SweepInterval {
		r.fail("OUTBOX_WAKE_DELAY", "%s is not shorter than OUTBOX_SWEEP_INTERVAL=%s: the sweep would publish before a woken relay does",
			c.Outbox.WakeDelay, c.Outbox.SweepInterval)
	}
	return c, r.err()
}
