package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Phase 5: resident memory of the api and worker processes, read from
// /proc/<pid>/status (VmRSS now, VmHWM the peak since the process started;
// the worker restarts in phases 2 and 3, so its peak is since then): a
// snapshot at the end of each phase (rssSample), and a sampling every
// second throughout the mode (rssSampled).

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
	for name, pid := range stackProcs(st)() {
		if m, ok := readProcMem(pid); ok {
			s.Procs[name] = m
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

// rssSampled is phase 5 throughout a mode: a goroutine reads VmRSS and
// VmHWM of every api and worker process every interval, from the stack's
// start to its stop, and keeps each instance's peaks (over all its
// processes: the worker is restarted by phases 2 and 3).
type rssSampled struct {
	IntervalS float64 `json:"interval_s"`
	Samples   int     `json:"samples"`
	// Processes maps an instance name (api, worker, api-2, ...) to its
	// peaks.
	Processes map[string]*rssPeak `json:"processes"`
}

type rssPeak struct {
	// RSSMiB is the highest VmRSS sampled, seen during Phase.
	RSSMiB float64 `json:"peak_sampled_rss_mib"`
	Phase  string  `json:"peak_sampled_phase"`
	// HWMMiB is the highest VmHWM read (the kernel's own peak of each
	// process, between samples too, up to its last sample).
	HWMMiB float64 `json:"peak_rss_mib"`
	PIDs   []int   `json:"pids"`
}

// observe folds one sample (instance name → its figures) taken during
// phase into the peaks.
func (s *rssSampled) observe(phase string, procs map[string]procMem) {
	s.Samples++
	if s.Processes == nil {
		s.Processes = map[string]*rssPeak{}
	}
	for name, m := range procs {
		p := s.Processes[name]
		if p == nil {
			p = &rssPeak{}
			s.Processes[name] = p
		}
		if m.RSSMiB > p.RSSMiB {
			p.RSSMiB, p.Phase = m.RSSMiB, phase
		}
		p.HWMMiB = max(p.HWMMiB, m.HWMMiB)
		if !slices.Contains(p.PIDs, m.PID) {
			p.PIDs = append(p.PIDs, m.PID)
		}
	}
}

// peak is the highest of VmRSS sampled and VmHWM over the instances of
// kind (api or worker): what the 64 MiB target is against.
func (s *rssSampled) peak(kind string) (mib float64, ok bool) {
	if s == nil {
		return 0, false
	}
	for name, p := range s.Processes {
		if instanceOf(name, kind) {
			mib, ok = max(mib, p.RSSMiB, p.HWMMiB), true
		}
	}
	return mib, ok
}

// rssSampler runs the sampling of one mode.
type rssSampler struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	phase  string
	s      rssSampled
}

// startRSSSampler samples the processes that pids names (instance → pid)
// every interval, with read (VmRSS and VmHWM of one pid; ok false when it
// has gone), until stop.
func startRSSSampler(interval time.Duration, pids func() map[string]int, read func(pid int) (procMem, bool)) *rssSampler {
	ctx, cancel := context.WithCancel(context.Background())
	r := &rssSampler{cancel: cancel, done: make(chan struct{}), phase: "start", s: rssSampled{IntervalS: interval.Seconds()}}
	go func() {
		defer close(r.done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			procs := map[string]procMem{}
			for name, pid := range pids() {
				if m, ok := read(pid); ok {
					procs[name] = m
				}
			}
			r.mu.Lock()
			r.s.observe(r.phase, procs)
			r.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return r
}

// setPhase names what runs from now on (the phase a peak is seen in).
func (r *rssSampler) setPhase(phase string) {
	r.mu.Lock()
	r.phase = phase
	r.mu.Unlock()
}

// stop ends the sampling (again: a no-op) and returns the peaks.
func (r *rssSampler) stop() *rssSampled {
	r.cancel()
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.s
	return &s
}

// stackProcs names every api and worker process of st.
func stackProcs(st *stack) func() map[string]int {
	return func() map[string]int {
		m := st.pids("api")
		maps.Copy(m, st.pids("worker"))
		return m
	}
}

// readProcMem reads VmRSS and VmHWM of pid from /proc.
func readProcMem(pid int) (procMem, bool) {
	status := fmt.Sprintf("/proc/%d/status", pid)
	rss, hwm := procField(status, "VmRSS"), procField(status, "VmHWM")
	if rss == "" {
		return procMem{}, false // gone, or a zombie
	}
	return procMem{PID: pid, RSSMiB: kib(rss), HWMMiB: kib(hwm)}, true
}

// instanceOf reports whether an instance name (api, api-2, worker, ...)
// is of kind: the name, or the name with a numeric -N suffix (devstack's
// naming).
func instanceOf(name, kind string) bool {
	n, ok := strings.CutPrefix(name, kind+"-")
	if !ok {
		return name == kind
	}
	_, err := strconv.Atoi(n)
	return err == nil
}
