package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"
)

// obsCheck proves observability was really on: Jaeger received spans from
// the api and the worker (through the OpenTelemetry Collector, which holds
// each trace for its tail-sampling decision, OTELCOL_DECISION_WAIT), and
// Prometheus scraped its targets, carteiro's own and the collector's among
// them.
type obsCheck struct {
	JaegerServices []string `json:"jaeger_services"`
	// JaegerWaitedS is how long the check waited for both services.
	JaegerWaitedS float64 `json:"jaeger_waited_s"`
	PrometheusUp  int     `json:"prometheus_targets_up"`
	PrometheusAll int     `json:"prometheus_targets"`
	// PrometheusJobs maps each scrape job to its targets up and in all
	// ("2/2").
	PrometheusJobs map[string]string `json:"prometheus_jobs"`
	// PrometheusDown lists the jobs with a target down (an exporter
	// missing on this machine is one; devstack says so in its log).
	PrometheusDown []string `json:"prometheus_jobs_down"`
}

// obsRequiredServices must have spans in Jaeger; obsRequiredJobs must have
// every target up.
var (
	obsRequiredServices = []string{"carteiro-api", "carteiro-worker"}
	obsRequiredJobs     = []string{"carteiro-api", "carteiro-worker", "otelcol"}
)

func checkObservability(ctx context.Context, st *stack) (obsCheck, error) {
	var c obsCheck
	// The collector sends a trace on once its decision wait is over: give
	// the last spans that long, and a margin.
	wait := st.dev.Config.Otelcol.DecisionWait + 30*time.Second
	start := time.Now()
	for {
		var services struct {
			Data []string `json:"data"`
		}
		if err := getJSON(ctx, st.url("JAEGER_QUERY_ADDR", "/api/services"), &services); err != nil {
			return c, fmt.Errorf("jaeger: %w", err)
		}
		c.JaegerServices = services.Data
		slices.Sort(c.JaegerServices)
		c.JaegerWaitedS = time.Since(start).Seconds()
		if missingServices(c.JaegerServices) == nil || time.Since(start) > wait {
			break
		}
		if err := sleep(ctx, 2*time.Second); err != nil {
			return c, err
		}
	}

	var up struct {
		Data struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	q := st.url("PROMETHEUS_LISTEN", "/api/v1/query?query="+url.QueryEscape("up"))
	if err := getJSON(ctx, q, &up); err != nil {
		return c, fmt.Errorf("prometheus: %w", err)
	}
	var ups []jobTarget
	for _, r := range up.Data.Result {
		s, _ := r.Value[1].(string)
		ups = append(ups, jobTarget{Job: r.Metric["job"], Up: s == "1"})
	}
	c.PrometheusUp, c.PrometheusAll, c.PrometheusJobs, c.PrometheusDown = summarizeTargets(ups)

	if m := missingServices(c.JaegerServices); m != nil {
		return c, fmt.Errorf("observability on, but Jaeger has no spans from %v after %.0f s (services: %v)", m, c.JaegerWaitedS, c.JaegerServices)
	}
	for _, j := range obsRequiredJobs {
		if _, ok := c.PrometheusJobs[j]; !ok || slices.Contains(c.PrometheusDown, j) {
			return c, fmt.Errorf("observability on, but Prometheus's job %s is not up (jobs: %v)", j, c.PrometheusJobs)
		}
	}
	return c, nil
}

// missingServices are the obsRequiredServices not in services.
func missingServices(services []string) []string {
	var m []string
	for _, want := range obsRequiredServices {
		if !slices.Contains(services, want) {
			m = append(m, want)
		}
	}
	return m
}

// jobTarget is one series of Prometheus's up.
type jobTarget struct {
	Job string
	Up  bool
}

// summarizeTargets counts the targets up and in all, per job ("1/2"), and
// lists (sorted) the jobs with a target down.
func summarizeTargets(targets []jobTarget) (up, all int, jobs map[string]string, down []string) {
	jobs, down = map[string]string{}, []string{}
	upOf, allOf := map[string]int{}, map[string]int{}
	for _, t := range targets {
		all++
		allOf[t.Job]++
		if t.Up {
			up++
			upOf[t.Job]++
		}
	}
	for j, n := range allOf {
		jobs[j] = fmt.Sprintf("%d/%d", upOf[j], n)
		if upOf[j] < n {
			down = append(down, j)
		}
	}
	slices.Sort(down)
	return up, all, jobs, down
}

func getJSON(ctx context.Context, u string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return get(ctx, http.DefaultClient, u, decodeJSON(v))
}
