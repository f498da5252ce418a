package health

import (
	"net/http"
	"net/http/pprof"
)

// RegisterPProf adds the runtime profiles under /debug/pprof/ to mux. The
// processes do it only when PPROF=true, and only on their internal port.
func RegisterPProf(mux *http.ServeMux) {
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}
