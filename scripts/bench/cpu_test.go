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
