package health

import (
	"net/http"
	"net/http/pprof"
	"runtime"
)

// Sampling of the block and mutex profiles while PPROF is on: one blocking
// event per blockProfileRate nanoseconds spent blocked, one contention
// event in mutexProfileFraction. Off (Go's default) otherwise.
const (
	blockProfileRate     = 10_000
	mutexProfileFraction = 100
)

// RegisterPProf adds the runtime profiles under /debug/pprof/ to mux (CPU,
// heap, goroutine, and the block and mutex profiles, which it turns on
// for the process). The processes do it only when PPROF=true, and only on
// their internal port.
func RegisterPProf(mux *http.ServeMux) {
	runtime.SetBlockProfileRate(blockProfileRate)
	runtime.SetMutexProfileFraction(mutexProfileFraction)
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}
