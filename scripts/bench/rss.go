package main

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Phase 5: resident memory of the api and worker processes, read from
// /proc/<pid>/status (VmRSS now, VmHWM the peak since the process started;
// the worker restarts in phase 3, so its peak is since then).

type rssSample struct {
	After string `json:"after"`
	At    string `json:"at"`
	// Procs maps an instance name (api, worker, api-2, ...) to its figures.
	Procs map[string]procMem `json:"processes"`
}

type procMem struct {
	PID    int     `json:"pid"`
	RSSMiB float64 `json:"rss_mib"`
	HWMMiB float64 `json:"peak_rss_mib"`
}

func sampleRSS(st *stack, after string) rssSample {
	s := rssSample{After: after, At: time.Now().UTC().Format(time.RFC3339), Procs: map[string]procMem{}}
	for _, kind := range []string{"api", "worker"} {
		for name, pid := range st.pids(kind) {
			status := fmt.Sprintf("/proc/%d/status", pid)
			s.Procs[name] = procMem{PID: pid, RSSMiB: kib(procField(status, "VmRSS")), HWMMiB: kib(procField(status, "VmHWM"))}
		}
	}
	return s
}

// kib turns "12345 kB" into MiB.
func kib(v string) float64 {
	f := strings.Fields(v)
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.ParseFloat(f[0], 64)
	return n / 1024
}

func (s rssSample) names() []string {
	var n []string
	for k := range s.Procs {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}
