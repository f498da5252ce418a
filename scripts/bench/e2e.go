package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Phase 4, end to end: an open-model load (requests start on a fixed
// schedule whether or not earlier ones were answered) at a fixed rate
// through nginx (issue 14's rate, then the drain's pace, then the
// search's trials and the rate it found: e2esearch.go), then the accepted
// → sent latency of exactly those rows (sent_at - created_at,
// percentile_cont in Postgres) and the deepest queue seen by polling the
// api's /metrics (every second, every e2eSearchPoll in the search's runs).

type e2eRun struct {
	// TargetRate is the offered rate; RateChoice (issue 14's run),
	// DrainRateChoice (the run at the drain's pace) or SearchChoice (the
	// run at the rate the search found) says why.
	TargetRate      float64          `json:"target_rps"`
	RateChoice      *e2eRate         `json:"rate_choice,omitempty"`
	DrainRateChoice *e2eDrainRate    `json:"drain_rate_choice,omitempty"`
	SearchChoice    *e2eSearchChoice `json:"search_choice,omitempty"`
	Variant         string           `json:"variant"`
	DurationS       float64          `json:"duration_s"`
	Requests        int64            `json:"requests"`
	AchievedRate    float64          `json:"achieved_rps"`
	Accepted        int64            `json:"accepted"`
	Non202          int64            `json:"non_202"`
	Transport       int64            `json:"transport_errors"`
	// MaxInFlight caps the requests waiting for an answer at once (a
	// load generator's clients; nginx's worker_connections is finite too).
	// Late counts requests that started behind schedule because the cap
	// was reached: the rate could not be offered.
	MaxInFlight int   `json:"max_in_flight"`
	Late        int64 `json:"late_starts"`
	// ClientLatencyMs is from each request's scheduled start to its answer.
	ClientLatencyMs latencyMs `json:"client_latency_ms"`
	// AcceptedToSentMs is from the row's created_at to its sent_at.
	AcceptedToSentMs latencyMs `json:"accepted_to_sent_ms"`
	Rows             int64     `json:"rows"`
	Sent             int64     `json:"sent"`
	InMailpit        int64     `json:"in_mailpit"`
	DrainAfterLoadS  float64   `json:"drain_after_load_s"`
	// MaxDepth is the highest carteiro_queue_depth seen per state, plus
	// "waiting" (queued + sending + failed in one scrape) and
	// "outbox_unpublished".
	MaxDepth map[string]float64 `json:"max_queue_depth"`
	Scrapes  int                `json:"depth_scrapes"`
	Codes    map[string]int64   `json:"codes"`

	// waiting are the depth polls (seconds after the load's start), and
	// sentAfterLoadS the last row's sent_at less the load's end: what the
	// search's criterion reads (e2eRun.observe), kept out of the results
	// of the runs that do not judge them.
	waiting        []depthSample
	sentAfterLoadS float64
}

// e2eVariant is what phase 4 posts: the page's own path (JSON with a key
// per message), as web/app.js does.
const e2eVariant = "json+key"

// e2eRate is phase 4's offered rate: min(½ the highest median accept rate
// of e2eVariant in the mode, 0.8 × the mode's median smtp-source rate), the
// rate at which delivery can keep up (issue 14).
type e2eRate struct {
	Rate float64 `json:"rate_per_s"`
	// ChosenBy names the smaller term: "accept" or "smtp-source".
	ChosenBy string `json:"chosen_by"`
	// HalfAccept is ½ of MaxAccept, the highest median requests/s of
	// e2eVariant's sets, measured by AcceptSet ("json+key c64").
	HalfAccept float64 `json:"half_max_accept_per_s"`
	MaxAccept  float64 `json:"max_accept_per_s"`
	AcceptSet  string  `json:"max_accept_set"`
	// SMTPSource is 0.8 × the median smtp-source msg/s (0: not measured,
	// then the accept term alone).
	SMTPSource float64 `json:"smtp_source_0_8_per_s"`
}

// chooseE2ERate computes phase 4's rate from the mode's accept sets and
// median smtp-source rate.
func chooseE2ERate(sets []*acceptSet, smtpSourceMedian float64) e2eRate {
	var r e2eRate
	for _, a := range sets {
		if a.Variant == e2eVariant && a.MedianRPS > r.MaxAccept {
			r.MaxAccept, r.AcceptSet = a.MedianRPS, a.name()
		}
	}
	r.HalfAccept = r.MaxAccept / 2
	r.SMTPSource = 0.8 * smtpSourceMedian
	r.Rate, r.ChosenBy = r.HalfAccept, "accept"
	if r.SMTPSource > 0 && r.SMTPSource < r.HalfAccept {
		r.Rate, r.ChosenBy = r.SMTPSource, "smtp-source"
	}
	return r
}

// e2eDrainFactor is the share of the stack's sustained capacity (see
// e2eDrainRate) that the run at the drain's pace offers.
const e2eDrainFactor = 0.8

// e2eDrainSource names where the run at the drain's pace takes its rate
// from: the worker's drains of BENCH_N queued rows in phase 3, and phase
// 2's highest median json+key accept rate.
const e2eDrainSource = "phase 3 drain of queued rows, with phase 2's json+key accept on the same cores"

// e2eDrainRate is the offered rate of phase 4's second run: 0.8 × the
// stack's capacity for accepting and delivering at once on this machine,
// 1 ÷ (1 ÷ MaxAccept + 1 ÷ DrainMedian) msg/s. Accepting and delivering
// share the same CPUs, so each message costs the machine the time of
// both, and neither rate alone can be offered: phase 3 measures the drain
// with nothing accepting, and 0.8 × that rate alone kept the queue full in
// phase 4 (every core also served the api, nginx and the inserts). Its
// accepted → sent latency is what carteiro delivers when it keeps up: a
// figure for information beside issue 14's run, with no target of its own.
type e2eDrainRate struct {
	Rate float64 `json:"rate_per_s"`
	// Source is e2eDrainSource.
	Source string  `json:"source"`
	Factor float64 `json:"factor"`
	// Capacity is 1 ÷ (1 ÷ MaxAccept + 1 ÷ DrainMedian) msg/s, or
	// DrainMedian alone when phase 2 measured no json+key accept rate.
	Capacity float64 `json:"capacity_per_s"`
	// MaxAccept is the highest median json+key requests/s of phase 2
	// (e2eRate.MaxAccept).
	MaxAccept float64 `json:"max_accept_per_s"`
	// DrainMedian is the median msg/s of the mode's drains, Drains each
	// drain's, in phase 3's order.
	DrainMedian float64   `json:"drain_median_per_s"`
	Drains      []float64 `json:"drain_runs_per_s"`
}

// chooseDrainE2ERate computes the rate at the drain's pace from the
// mode's phase 3 drains (the ones that delivered every message) and its
// highest median json+key accept rate (0: not measured). skip is why
// there is no such run ("" when there is one): no drain, no rate, or a
// rate below 1 request/s.
func chooseDrainE2ERate(drains []deliveryRun, maxAccept float64) (r e2eDrainRate, skip string) {
	r = e2eDrainRate{Source: e2eDrainSource, Factor: e2eDrainFactor, MaxAccept: maxAccept,
		Drains: pluck(drains, func(d deliveryRun) float64 { return d.Rate })}
	r.DrainMedian = median(r.Drains)
	r.Capacity = r.DrainMedian
	if maxAccept > 0 && r.DrainMedian > 0 {
		r.Capacity = 1 / (1/maxAccept + 1/r.DrainMedian)
	}
	r.Rate = e2eDrainFactor * r.Capacity
	switch {
	case len(drains) == 0:
		return r, "phase 3 recorded no drain (it did not run, or no drain delivered every message)"
	case r.DrainMedian <= 0:
		return r, "phase 3's drains measured no rate"
	case r.Rate < 1:
		return r, fmt.Sprintf("%.1f × the capacity %.2f msg/s is below 1 request/s", e2eDrainFactor, r.Capacity)
	}
	return r, ""
}

// Errors are answers other than 202 and failed requests.
func (r e2eRun) Errors() int64 { return r.Non202 + r.Transport }

// runE2E offers e2eVariant at rate requests/s for dur and waits until
// every accepted message is sent and in Mailpit, polling the queue's depth
// every pollEvery; the caller records how the rate was chosen
// (RateChoice, DrainRateChoice or SearchChoice).
func runE2E(ctx context.Context, st *stack, db *benchDB, mp *mailpit, prefix string, rate float64, dur time.Duration, maxInFlight int, pollEvery time.Duration) (e2eRun, error) {
	r := e2eRun{TargetRate: rate, Variant: e2eVariant, DurationS: dur.Seconds(), MaxInFlight: maxInFlight,
		MaxDepth: map[string]float64{}, Codes: map[string]int64{}}
	if rate < 1 {
		return r, fmt.Errorf("end-to-end rate %.2f/s is too low (what it is chosen from measured too little)", rate)
	}
	// One Idempotency-Key per message, unique across runs.
	var kb [8]byte
	rand.Read(kb[:])
	keyPrefix := `"bench-e2e-` + hex.EncodeToString(kb[:]) + "-"
	if err := mp.Clear(ctx); err != nil {
		return r, err
	}

	// Depth polling, from the start of the load until the drain is over.
	poll := startDepthPoll(ctx, st.url("API_INTERNAL_ADDR", "/metrics"), pollEvery)
	defer poll.stop()

	tr := &http.Transport{MaxIdleConns: maxInFlight, MaxIdleConnsPerHost: maxInFlight, IdleConnTimeout: 90 * time.Second}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	url := st.url("NGINX_LISTEN", "/api/messages")

	n := int(rate * dur.Seconds())
	lat := make([]float64, n)
	status := make([]int, n)
	sem := make(chan struct{}, maxInFlight)
	var late atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n && ctx.Err() == nil; i++ {
		due := start.Add(time.Duration(float64(i) * float64(time.Second) / rate))
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		select {
		case sem <- struct{}{}:
		default:
			late.Add(1)
			sem <- struct{}{}
		}
		wg.Go(func() {
			defer func() { <-sem }()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(jsonBody(prefix, i)))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json")
			req.Header.Set("Idempotency-Key", keyPrefix+strconv.Itoa(i)+`"`)
			resp, err := client.Do(req)
			if err != nil {
				status[i] = -1
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			status[i] = resp.StatusCode
			lat[i] = float64(time.Since(due)) / float64(time.Millisecond)
		})
	}
	wg.Wait()
	loadEnd := time.Now()
	elapsed := loadEnd.Sub(start).Seconds()
	if err := ctx.Err(); err != nil {
		return r, err
	}

	var ok []float64
	for i, s := range status {
		switch {
		case s == 202:
			r.Accepted++
			ok = append(ok, lat[i])
		case s < 0:
			r.Transport++
		default:
			r.Non202++
		}
		switch {
		case s < 0:
			r.Codes["transport_error"]++
		case s > 0:
			r.Codes[strconv.Itoa(s)]++
		}
	}
	r.Requests = int64(n)
	r.AchievedRate = float64(n) / elapsed
	r.Late = late.Load()
	r.ClientLatencyMs = summarize(ok)

	d, err := db.waitSent(ctx, prefix, r.Accepted, 10*time.Minute+time.Duration(r.Accepted/50)*time.Second)
	r.DrainAfterLoadS = time.Since(loadEnd).Seconds()
	r.MaxDepth, r.Scrapes = poll.stop()
	r.waiting = poll.since(start)
	if !d.LastSent.IsZero() {
		r.sentAfterLoadS = d.LastSent.Sub(loadEnd).Seconds()
	}
	r.Rows, r.Sent = d.Rows, d.Sent
	r.AcceptedToSentMs = latencyMs{Min: d.Min * 1000, Mean: d.Mean * 1000, P50: d.P50 * 1000,
		P90: d.P90 * 1000, P99: d.P99 * 1000, Max: d.Max * 1000}
	if err != nil {
		return r, err
	}
	got, err := mp.expect(ctx, r.Accepted)
	r.InMailpit = got
	if err != nil {
		return r, err
	}
	if r.Errors() > 0 {
		return r, fmt.Errorf("%d of %d request(s) failed (%d not 202, %d transport errors; codes %v)",
			r.Errors(), r.Requests, r.Non202, r.Transport, r.Codes)
	}
	return r, nil
}

// depthPoll scrapes the api's /metrics every interval and keeps the
// highest value of each queue-depth series, and each scrape's waiting.
type depthPoll struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	max     map[string]float64
	waiting []timedDepth // one per scrape
}

// timedDepth is one scrape's waiting and when it was asked for.
type timedDepth struct {
	at      time.Time
	waiting float64
}

func startDepthPoll(ctx context.Context, url string, every time.Duration) *depthPoll {
	ctx, cancel := context.WithCancel(ctx)
	p := &depthPoll{cancel: cancel, max: map[string]float64{}}
	c := &http.Client{Timeout: 3 * time.Second}
	p.wg.Go(func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			at := time.Now()
			if m, err := scrapeDepth(ctx, c, url); err == nil {
				p.mu.Lock()
				for k, v := range m {
					p.max[k] = max(p.max[k], v)
				}
				p.waiting = append(p.waiting, timedDepth{at, m["waiting"]})
				p.mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
	return p
}

// since is every scrape's waiting, timed in seconds from start.
func (p *depthPoll) since(start time.Time) []depthSample {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]depthSample, len(p.waiting))
	for i, w := range p.waiting {
		out[i] = depthSample{AtS: w.at.Sub(start).Seconds(), Waiting: w.waiting}
	}
	return out
}

// stop ends the polling (again: a no-op) and returns a copy of the maxima
// and the number of scrapes.
func (p *depthPoll) stop() (map[string]float64, int) {
	p.cancel()
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	m := make(map[string]float64, len(p.max))
	for k, v := range p.max {
		m[k] = v
	}
	return m, len(p.waiting)
}

// scrapeDepth GETs a /metrics page at url and reads its depths (parseDepth).
func scrapeDepth(ctx context.Context, c *http.Client, url string) (m map[string]float64, err error) {
	err = get(ctx, c, url, func(r io.Reader) (err error) {
		m, err = parseDepth(r)
		return err
	})
	return m, err
}

// parseDepth reads the queue's depths from a Prometheus text exposition:
// carteiro_queue_depth by state, carteiro_outbox_unpublished, and waiting
// (queued + sending + failed).
func parseDepth(r io.Reader) (map[string]float64, error) {
	m := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		// name{labels} value [timestamp]
		var key, value string
		if rest, ok := strings.CutPrefix(line, `carteiro_queue_depth{state="`); ok {
			state, after, ok := strings.Cut(rest, `"}`)
			if !ok {
				continue
			}
			key, value = state, after
		} else if rest, ok := strings.CutPrefix(line, "carteiro_outbox_unpublished "); ok {
			key, value = "outbox_unpublished", rest
		} else {
			continue
		}
		f := strings.Fields(value)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		m[key] = v
	}
	m["waiting"] = m["queued"] + m["sending"] + m["failed"]
	return m, sc.Err()
}
