package main

import (
	"bytes"
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Phase 2, the accept path: wrk (Debian's, C and cheap on a 2-core
// machine) POSTing through nginx with a fixed number of connections, each
// sending its next request as soon as the previous one is answered, in
// each of the ways the page posts a message (acceptVariant).

//go:embed accept.lua
var acceptLua []byte

// acceptVariant is one way of posting a message: as a form or as JSON,
// with or without an Idempotency-Key.
type acceptVariant struct {
	// Form: POST /api, application/x-www-form-urlencoded, a browser's
	// Accept (what web/index.html's form posts without script; the api
	// answers with its HTML page). Otherwise POST /api/messages,
	// application/json, Accept: application/json (what web/app.js posts).
	Form bool
	// Key: every request carries its own Idempotency-Key, quoted as
	// web/app.js sends its one key per message.
	Key bool
}

// acceptVariants are the variants phase 2 measures, by name; the first is
// the one measured before variants existed (JSON without a key), and
// json+key is the page's own path (it always sends a key).
var acceptVariants = []string{"json", "json+key", "form", "form+key"}

// parseVariant reads a variant's name: json, json+key, form or form+key.
func parseVariant(name string) (acceptVariant, error) {
	content, key, _ := strings.Cut(name, "+")
	v := acceptVariant{Form: content == "form", Key: key == "key"}
	if (content != "form" && content != "json") || (key != "" && key != "key") {
		return v, fmt.Errorf("want json, json+key, form or form+key, got %q", name)
	}
	return v, nil
}

// path is where the variant posts.
func (v acceptVariant) path() string {
	if v.Form {
		return "/api"
	}
	return "/api/messages"
}

// content is accept.lua's CONTENT argument.
func (v acceptVariant) content() string {
	if v.Form {
		return "form"
	}
	return "json"
}

type acceptRun struct {
	Round       int              `json:"round"`
	Connections int              `json:"connections"`
	Threads     int              `json:"threads"`
	Requests    int64            `json:"requests"`
	DurationS   float64          `json:"duration_s"`
	RPS         float64          `json:"rps"`
	Accepted    int64            `json:"accepted"`
	Non202      int64            `json:"non_202"`
	Transport   int64            `json:"transport_errors"`
	Codes       map[string]int64 `json:"codes"`
	WrkErrors   map[string]int64 `json:"wrk_errors"`
	LatencyMs   latencyMs        `json:"latency_ms"`
	Command     string           `json:"command"`
	// Variant is the acceptVariant's name (json, json+key, form, form+key).
	Variant string `json:"variant"`
	// WorkerStopped: BENCH_ACCEPT_WORKER=stop.
	WorkerStopped bool `json:"worker_stopped,omitempty"`
	// CPUSeconds is the CPU time each of the stack's components used
	// during the run (cpu.go): nginx, api, and with observability on the
	// collector, Jaeger, Prometheus and the exporters; postgres, the bench
	// database's backends; wrk, the load generator itself (the no-op
	// ceiling's runs have wrk's alone).
	CPUSeconds map[string]float64 `json:"cpu_s,omitempty"`
	// CPUUsPerRequest is CPUSeconds in µs per accepted request, and their
	// sum ("total"): what an accepted request costs the machine.
	CPUUsPerRequest map[string]float64 `json:"cpu_us_per_request,omitempty"`
}

type latencyMs struct {
	Min  float64 `json:"min"`
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90,omitempty"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999,omitempty"`
	Max  float64 `json:"max"`
}

// Errors are answers other than 202 plus connect, read, write and timeout
// errors.
func (r acceptRun) Errors() int64 { return r.Non202 + r.Transport }

// runAccept runs wrk with accept.lua against base (scheme and host; the
// variant names the path) for dur.
func runAccept(ctx context.Context, s settings, base, dir, prefix, variant string, conns, round int, dur time.Duration) (acceptRun, error) {
	v, err := parseVariant(variant)
	if err != nil {
		return acceptRun{}, err
	}
	script := filepath.Join(dir, "accept.lua")
	if err := os.WriteFile(script, acceptLua, 0o644); err != nil {
		return acceptRun{}, err
	}
	keyPrefix := ""
	if v.Key {
		// Unique across runs and modes: the api remembers keys.
		var b [8]byte
		rand.Read(b[:])
		keyPrefix = "bench-" + hex.EncodeToString(b[:])
	}
	threads := min(s.WrkThreads, conns)
	args := []string{"-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns), "-d", dur.String(),
		"--timeout", "10s", "--latency", "-s", script, base + v.path(), "--", prefix, benchText, v.content(), keyPrefix}
	r := acceptRun{Round: round, Connections: conns, Threads: threads, Variant: variant,
		Command: "wrk " + strings.Join(args[:len(args)-4], " ") + " '" + prefix + "' <body text> " + v.content() + " '" + keyPrefix + "'"}
	cmd := exec.CommandContext(ctx, "wrk", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	if ps := cmd.ProcessState; ps != nil {
		r.CPUSeconds = map[string]float64{cpuWrk: (ps.UserTime() + ps.SystemTime()).Seconds()}
	}
	text := out.String()
	_, js, found := strings.Cut(text, "BENCH-RESULT ")
	if err != nil || !found {
		return r, fmt.Errorf("wrk: %v\n%s", err, indent(tail(text, 20)))
	}
	js, _, _ = strings.Cut(js, "\n")
	var w struct {
		Requests   int64              `json:"requests"`
		DurationUs int64              `json:"duration_us"`
		Errors     map[string]int64   `json:"errors"`
		LatencyUs  map[string]float64 `json:"latency_us"`
		Codes      map[string]int64   `json:"codes"`
	}
	if err := json.Unmarshal([]byte(js), &w); err != nil {
		return r, fmt.Errorf("wrk: its result line: %w\n%s", err, indent(js))
	}
	r.Requests = w.Requests
	r.DurationS = float64(w.DurationUs) / 1e6
	if r.DurationS > 0 {
		r.RPS = float64(w.Requests) / r.DurationS
	}
	r.Codes = w.Codes
	r.WrkErrors = w.Errors
	var answered int64
	for code, n := range w.Codes {
		answered += n
		if code == "202" {
			r.Accepted = n
		}
	}
	r.Non202 = answered - r.Accepted
	r.Transport = w.Errors["connect"] + w.Errors["read"] + w.Errors["write"] + w.Errors["timeout"]
	ms := func(k string) float64 { return w.LatencyUs[k] / 1000 }
	r.LatencyMs = latencyMs{Min: ms("min"), Mean: ms("mean"), P50: ms("p50"), P90: ms("p90"),
		P99: ms("p99"), P999: ms("p999"), Max: ms("max")}
	if r.Accepted == 0 {
		return r, fmt.Errorf("wrk: no request accepted\n%s", indent(tail(text, 20)))
	}
	return r, nil
}
