package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// clientTimeout is the longest a POST may take: the api promises an answer
// (202 or 503) within 3 × DB_QUERY_TIMEOUT (4.5 s with the defaults: the
// group-commit queue, the batch, a retry of each row alone), or 8 × (12 s)
// when its COMMIT is in doubt (README "How delivery works"), and nginx
// gives up at 15 s, so a request still open after this is a failure, not
// a slow success.
const clientTimeout = 15 * time.Second

// result is one POST.
type result struct {
	n       int64
	subject string
	id      string // the message id, from a 2xx answer
	status  int    // 0 when the request failed without an answer
	// inDoubt: a 500 saying the database stopped answering during the
	// message's COMMIT, so whether it is stored is unknown (still an err).
	inDoubt bool
	err     error
	start   time.Time
	latency time.Duration
}

// load is a concurrent load generator: a bounded pool of goroutines
// posting JSON messages through nginx over keep-alive connections (only
// ever to the stack's loopback address).
type load struct {
	url    string
	tag    string
	client *http.Client
	seq    atomic.Int64

	mu      sync.Mutex
	results []result
}

func newLoad(s *stack, tag string, conns int) *load {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     20 * time.Second,
		DisableCompression:  true,
	}
	return &load{url: s.URL + "/api/messages", tag: tag, client: &http.Client{Transport: tr, Timeout: clientTimeout}}
}

// post sends one message; its subject is "<tag> <n>".
func (l *load) post(ctx context.Context) result {
	n := l.seq.Add(1)
	r := result{n: n, subject: fmt.Sprintf("%s %d", l.tag, n), start: time.Now()}
	body, _ := json.Marshal(map[string]string{"assunto": r.subject, "mensagem": "chaos: " + l.tag})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.url, bytes.NewReader(body))
	if err != nil {
		r.err = err
		return l.record(r)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	res, err := l.client.Do(req)
	r.latency = time.Since(r.start)
	if err != nil {
		r.err = err
		return l.record(r)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<16))
	r.latency = time.Since(r.start)
	r.status = res.StatusCode
	if err != nil {
		r.err = err
		return l.record(r)
	}
	if res.StatusCode/100 == 2 {
		var out struct{ ID string }
		if err := json.Unmarshal(b, &out); err != nil || out.ID == "" {
			r.err = fmt.Errorf("2xx without an id: %q", b)
		}
		r.id = out.ID
	} else if res.StatusCode != http.StatusServiceUnavailable {
		r.err = fmt.Errorf("answer %d: %.200s", res.StatusCode, b)
		r.inDoubt = res.StatusCode == http.StatusInternalServerError && bytes.Contains(b, []byte("may or may not be stored"))
	}
	return l.record(r)
}

func (l *load) record(r result) result {
	l.mu.Lock()
	l.results = append(l.results, r)
	l.mu.Unlock()
	return r
}

// burst posts n messages, conns at a time, as fast as the stack answers.
func (l *load) burst(ctx context.Context, n, conns int) {
	var left atomic.Int64
	left.Store(int64(n))
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			for left.Add(-1) >= 0 && ctx.Err() == nil {
				l.post(ctx)
			}
		})
	}
	wg.Wait()
}

// paced posts rate messages per second, at most conns at a time, until ctx
// is done (a request in flight then still completes). When every
// connection is busy the next request waits: the rate is a ceiling.
func (l *load) paced(ctx context.Context, rate float64, conns int) {
	slots := make(chan struct{}, conns)
	var wg sync.WaitGroup
	defer wg.Wait()
	interval := time.Duration(float64(time.Second) / rate)
	next := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case slots <- struct{}{}:
		}
		if d := time.Until(next); d > 0 {
			select {
			case <-ctx.Done():
				<-slots
				return
			case <-time.After(d):
			}
		}
		next = next.Add(interval)
		if behind := time.Since(next); behind > time.Second {
			next = time.Now() // do not make up for a stall with a burst
		}
		wg.Go(func() {
			defer func() { <-slots }()
			l.post(context.WithoutCancel(ctx))
		})
	}
}

// snapshot returns the results so far, in the order they finished.
func (l *load) snapshot() []result {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.results)
}

// accepted returns the ids of the 2xx answers.
func accepted(rs []result) []string {
	var ids []string
	for _, r := range rs {
		if r.status/100 == 2 && r.id != "" {
			ids = append(ids, r.id)
		}
	}
	return ids
}

// failures returns the requests that got neither a 2xx nor a 503, or no
// answer at all (a timeout or a broken connection).
func failures(rs []result) []result {
	var out []result
	for _, r := range rs {
		if r.err != nil || (r.status/100 != 2 && r.status != http.StatusServiceUnavailable) {
			out = append(out, r)
		}
	}
	return out
}

// byStatus counts answers by HTTP status (0: no answer).
func byStatus(rs []result) string {
	m := map[int]int{}
	for _, r := range rs {
		m[r.status]++
	}
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

// latencies summarises durations: count, min, p50, p95, max.
func latencies(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	q := func(p float64) time.Duration { return ds[int(p*float64(len(ds)-1))] }
	r := func(d time.Duration) string { return d.Round(100 * time.Microsecond).String() }
	return fmt.Sprintf("n=%d min=%s p50=%s p95=%s max=%s", len(ds), r(ds[0]), r(q(0.5)), r(q(0.95)), r(ds[len(ds)-1]))
}

func describe(rs []result) string {
	var b strings.Builder
	for i, r := range rs {
		if i == 10 {
			fmt.Fprintf(&b, "… and %d more", len(rs)-10)
			break
		}
		fmt.Fprintf(&b, "%q: status %d after %s: %v; ", r.subject, r.status, r.latency.Round(time.Millisecond), r.err)
	}
	return b.String()
}
