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

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times: 100 on
// every Linux architecture Go runs on (proc(5)).
const clockTicks = 100

// cpuTimes is the CPU time (user + system, seconds) each running kind of
// component has used since it started, its direct children included (nginx's
// workers).
func (st *stack) cpuTimes() map[string]float64 {
	children := childPIDs()
	out := map[string]float64{}
	for _, kind := range cpuKinds {
		for _, p := range st.dev.Instances(kind) {
			t := procCPU(p.PID)
			for _, c := range children[p.PID] {
				t += procCPU(c)
			}
			out[kind] += t
		}
	}
	return out
}

// cpuSince is, per kind, the CPU seconds used between before and after.
func cpuSince(before, after map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range after {
		out[k] = v - before[k]
	}
	return out
}

// procCPU is utime + stime of pid in seconds (fields 14 and 15 of
// /proc/<pid>/stat, counted after the parenthesised command name, which
// may hold spaces); 0 when the process is gone.
func procCPU(pid int) float64 {
	f := statFields(pid)
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	s, _ := strconv.ParseFloat(f[12], 64)
	return (u + s) / clockTicks
}

// statFields are the fields of /proc/<pid>/stat after the command name:
// [0] is the state (field 3).
func statFields(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

// childPIDs maps each parent pid to its children's, from /proc.
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
		if f := statFields(pid); len(f) > 1 {
			if ppid, err := strconv.Atoi(f[1]); err == nil {
				out[ppid] = append(out[ppid], pid)
			}
		}
	}
	return out
}

// formatCPU prints cpu_s in cpuKinds' order, e.g. "nginx 0.8 api 2.1".
func formatCPU(cpu map[string]float64) string {
	var b strings.Builder
	for _, k := range cpuKinds {
		if v, ok := cpu[k]; ok {
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(k + " " + strconv.FormatFloat(v, 'f', 2, 64))
		}
	}
	return b.String()
}
