package main

import (
	"os"
	"os/exec"
	"testing"
)

func TestChildPIDs(t *testing.T) {
	cmd := exec.Command("sleep", "5")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	found := false
	for _, c := range childPIDs()[os.Getpid()] {
		found = found || c == cmd.Process.Pid
	}
	if !found {
		t.Errorf("children of %d: got %v, want %d among them", os.Getpid(), childPIDs()[os.Getpid()], cmd.Process.Pid)
	}
}

func TestCPUSinceAndFormat(t *testing.T) {
	got := cpuByKindSince(map[string]float64{"api": 1, "nginx": 2}, map[string]float64{"api": 3.5, "nginx": 2.25, "otelcol": 1})
	if got["api"] != 2.5 || got["nginx"] != 0.25 || got["otelcol"] != 1 {
		t.Errorf("got %v, want api 2.5, nginx 0.25, otelcol 1", got)
	}
	if s := formatCPU(got); s != "nginx 0.25 api 2.50 otelcol 1.00" {
		t.Errorf("got %q, want %q", s, "nginx 0.25 api 2.50 otelcol 1.00")
	}
}

func TestCPUPerRequest(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cpu      map[string]float64
		accepted int64
		want     string
	}{
		{"every component", map[string]float64{"api": 2.9, "nginx": 0.81, "postgres": 1.2, "wrk": 0.4}, 10000,
			"nginx 81 api 290 postgres 120 wrk 40 = 531"},
		{"observability on", map[string]float64{"api": 1, "otelcol": 0.5, "postgres": 0.25}, 5000,
			"api 200 otelcol 100 postgres 50 = 350"},
		{"nothing accepted", map[string]float64{"api": 1}, 0, ""},
		{"no cpu_s", nil, 100, ""},
	} {
		if got := formatCPUPerRequest(cpuPerRequest(tc.cpu, tc.accepted)); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestMedianCPUPerRequest(t *testing.T) {
	runs := []acceptRun{
		{CPUUsPerRequest: map[string]float64{"api": 300, "wrk": 40, "total": 340}},
		{CPUUsPerRequest: map[string]float64{"api": 280, "total": 280}},
		{CPUUsPerRequest: map[string]float64{"api": 250, "wrk": 50, "total": 300}},
		{}, // a run of an older results file: no cpu_us_per_request
	}
	got := medianCPUPerRequest(runs)
	want := map[string]float64{"api": 280, "wrk": 45, "total": 300}
	if len(got) != len(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %v, want %v", k, got[k], v)
		}
	}
	if got := medianCPUPerRequest([]acceptRun{{}}); got != nil {
		t.Errorf("no run with figures: got %v, want nil", got)
	}
}
