package main

import (
	"os"
	"strconv"
	"strings"
)

// cpuKinds are the stack's components whose CPU time each accept run
// records (those not running in a mode are left out): with observability
// on, the collector, Jaeger and Prometheus share the machine's cores with
// nginx and the api, so the cost of observability is the api's extra CPU
// plus theirs.
var cpuKinds = []string{"nginx", "api", "otelcol", "jaeger", "prometheus", "alertmanager",
	"nginx-exporter", "postgres-exporter", "redis-exporter"}

// cpuTimes is the CPU time (user + system, seconds; processCPU) each
// running kind of component has used since it started, its direct
// children included (nginx's workers).
func (st *stack) cpuTimes() map[string]float64 {
	children := childPIDs()
	out := map[string]float64{}
	for _, kind := range cpuKinds {
		for _, pid := range st.pids(kind) {
			for _, p := range append([]int{pid}, children[pid]...) {
				if cpu, err := processCPU(p); err == nil {
					out[kind] += cpu
				}
			}
		}
	}
	return out
}

// cpuByKindSince is, per kind, the CPU seconds used between before and
// after.
func cpuByKindSince(before, after map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range after {
		out[k] = v - before[k]
	}
	return out
}

// childPIDs maps each parent pid to its children's, from /proc (field 4
// of /proc/<pid>/stat, after the command name, which may hold spaces).
func childPIDs() map[int][]int {
	out := map[int][]int{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 {
			if ppid, err := strconv.Atoi(f[1]); err == nil {
				out[ppid] = append(out[ppid], pid)
			}
		}
	}
	return out
}

// Besides the stack's kinds, an accept run's cpu_s holds cpuPostgres, the
// bench database's Postgres backends (benchDB.backendCPU: a backend that
// ends during the run is left out, one that starts counts from its
// start), and cpuWrk, wrk itself (its rusage): with nginx and the api,
// the whole machine's CPU per accepted request.
const (
	cpuPostgres = "postgres"
	cpuWrk      = "wrk"
)

// cpuColumns is the order cpu_s is printed in: cpuKinds, then Postgres
// and wrk.
func cpuColumns() []string {
	return append(append([]string{}, cpuKinds...), cpuPostgres, cpuWrk)
}

// formatCPU prints cpu_s in cpuColumns' order, e.g. "nginx 0.80 api 2.10".
func formatCPU(cpu map[string]float64) string {
	return formatByColumn(cpu, 2)
}

// cpuPerRequest is cpu_s in µs per accepted request, with "total" the sum
// of every component's; empty when nothing was accepted.
func cpuPerRequest(cpu map[string]float64, accepted int64) map[string]float64 {
	out := map[string]float64{}
	if accepted <= 0 || len(cpu) == 0 {
		return out
	}
	for k, v := range cpu {
		us := v * 1e6 / float64(accepted)
		out[k] = us
		out[cpuTotal] += us
	}
	return out
}

// cpuTotal is cpuPerRequest's key of every component's sum.
const cpuTotal = "total"

// formatCPUPerRequest prints cpuPerRequest's µs in cpuColumns' order,
// the total last: "nginx 81 api 290 postgres 120 wrk 40 = 531".
func formatCPUPerRequest(us map[string]float64) string {
	s := formatByColumn(us, 0)
	if t, ok := us[cpuTotal]; ok {
		s += " = " + strconv.FormatFloat(t, 'f', 0, 64)
	}
	return s
}

// formatByColumn prints m's values in cpuColumns' order, each with prec
// decimals after its key.
func formatByColumn(m map[string]float64, prec int) string {
	var b strings.Builder
	for _, k := range cpuColumns() {
		if v, ok := m[k]; ok {
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(k + " " + strconv.FormatFloat(v, 'f', prec, 64))
		}
	}
	return b.String()
}
