package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"
)

// obsCheck proves observability was really on: Jaeger received spans from
// the api and the worker, and Prometheus scraped its targets.
type obsCheck struct {
	JaegerServices []string `json:"jaeger_services"`
	PrometheusUp   int      `json:"prometheus_targets_up"`
	PrometheusAll  int      `json:"prometheus_targets"`
}

func checkObservability(ctx context.Context, st *stack) (obsCheck, error) {
	var c obsCheck
	var services struct {
		Data []string `json:"data"`
	}
	if err := getJSON(ctx, st.url("JAEGER_QUERY_ADDR", "/api/services"), &services); err != nil {
		return c, fmt.Errorf("jaeger: %w", err)
	}
	c.JaegerServices = services.Data
	slices.Sort(c.JaegerServices)
	var up struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	q := st.url("PROMETHEUS_LISTEN", "/api/v1/query?query="+url.QueryEscape("up"))
	if err := getJSON(ctx, q, &up); err != nil {
		return c, fmt.Errorf("prometheus: %w", err)
	}
	for _, r := range up.Data.Result {
		c.PrometheusAll++
		if s, _ := r.Value[1].(string); s == "1" {
			c.PrometheusUp++
		}
	}
	for _, want := range []string{"carteiro-api", "carteiro-worker"} {
		if !slices.Contains(c.JaegerServices, want) {
			return c, fmt.Errorf("observability on, but Jaeger has no spans from %s (services: %v)", want, c.JaegerServices)
		}
	}
	if c.PrometheusUp == 0 {
		return c, fmt.Errorf("observability on, but Prometheus has no target up")
	}
	return c, nil
}

func getJSON(ctx context.Context, u string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
