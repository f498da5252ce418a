package devstack

import (
	"context"
	"net"
	"path/filepath"
	"strconv"
	"time"
)

// OtelcolSettings are the OpenTelemetry Collector's (OBS=1): the api and
// the workers export their spans to it, and it computes span metrics from
// every span (scraped by Prometheus, job otelcol), samples traces by their
// tail and sends the kept ones to Jaeger
// (observability/otelcol/config.yaml; README "See it").
type OtelcolSettings struct {
	OTLPGRPCAddr string // OTELCOL_OTLP_GRPC_ADDR 127.0.0.1:4317
	OTLPHTTPAddr string // OTELCOL_OTLP_HTTP_ADDR 127.0.0.1:4318: api and worker export here
	MetricsAddr  string // OTELCOL_METRICS_ADDR 127.0.0.1:8889: span metrics (/metrics)
	HealthAddr   string // OTELCOL_HEALTH_ADDR 127.0.0.1:13133: readiness (GET /)
	// TelemetryAddr is OTELCOL_TELEMETRY_ADDR (127.0.0.1:8888): the
	// collector's own metrics (/metrics, Prometheus job
	// otelcol-telemetry), handed to it as OTELCOL_TELEMETRY_HOST and
	// OTELCOL_TELEMETRY_PORT (its configuration takes them apart).
	TelemetryAddr string
	// SamplePercent is OTELCOL_SAMPLE_PERCENT (100): the share of ordinary
	// traces kept, in percent (0 to 100). Traces with an error, a dead
	// letter or a duration over the delivery objective are always kept.
	SamplePercent float64
	// DecisionWait is OTELCOL_DECISION_WAIT (30 s): how long the spans of
	// a trace are gathered before it is kept or dropped.
	DecisionWait time.Duration
	// NumTraces is OTELCOL_NUM_TRACES (100,000): how many traces tail
	// sampling holds awaiting their decision; above NumTraces ÷
	// DecisionWait new traces a second it evicts the oldest before their
	// decision (observability/otelcol/config.yaml has the sizing rule).
	NumTraces int
	Config    string // OTELCOL_CONFIG (Root/observability/otelcol/config.yaml)
}

// loadOtelcol reads the collector's settings.
func loadOtelcol(e *env, c *Config) {
	c.Otelcol = OtelcolSettings{
		OTLPGRPCAddr:  e.addr("OTELCOL_OTLP_GRPC_ADDR", "127.0.0.1:4317", false),
		OTLPHTTPAddr:  e.addr("OTELCOL_OTLP_HTTP_ADDR", "127.0.0.1:4318", false),
		MetricsAddr:   e.addr("OTELCOL_METRICS_ADDR", "127.0.0.1:8889", false),
		HealthAddr:    e.addr("OTELCOL_HEALTH_ADDR", "127.0.0.1:13133", false),
		TelemetryAddr: e.addr("OTELCOL_TELEMETRY_ADDR", "127.0.0.1:8888", false),
		DecisionWait:  e.seconds("OTELCOL_DECISION_WAIT", 30*time.Second),
		Config:        e.get("OTELCOL_CONFIG", filepath.Join(c.Root, "observability", "otelcol", "config.yaml")),
	}
	held := e.get("OTELCOL_NUM_TRACES", "100000")
	n, err := strconv.Atoi(held)
	if err != nil || n < 1 {
		e.fail("OTELCOL_NUM_TRACES", "got %q, want a whole number of traces above 0", held)
		n = 100000
	}
	c.Otelcol.NumTraces = n
	share := e.get("OTELCOL_SAMPLE_PERCENT", "100")
	p, err := strconv.ParseFloat(share, 64)
	if err != nil || p < 0 || p > 100 {
		e.fail("OTELCOL_SAMPLE_PERCENT", "got %q, want a percentage from 0 to 100", share)
		p = 100
	}
	c.Otelcol.SamplePercent = p
}

// The collector's Go runtime settings (its GOGC and GOMEMLIMIT), the same
// in compose (docker-compose.observability.yml). Its garbage collector was
// a third of its CPU: GOGC 200 collects half as often while the heap is
// small (a few hundred traces a second), and the memory limit makes the
// runtime collect harder before the heap reaches memory_limiter's soft
// limit (OTELCOL_MEMORY_LIMIT_MIB − OTELCOL_MEMORY_SPIKE_MIB, 640 MiB),
// above which every span would be refused; it is above what
// OTELCOL_NUM_TRACES held traces need (observability/otelcol/config.yaml,
// "Sizing OTELCOL_NUM_TRACES"). bench/README.md has the measurements.
const (
	OtelcolGOGC       = "200"
	OtelcolGOMEMLIMIT = "600MiB"
)

// otelcol is the collector between the services and Jaeger: it starts
// after Jaeger (where it sends the traces it keeps) and stops before it,
// after the services, so their last spans are sampled and sent.
func (c Config) otelcol() Component {
	o := c.Otelcol
	// A bare port is 127.0.0.1's (env.addr).
	telemetryHost, telemetryPort, err := net.SplitHostPort(o.TelemetryAddr)
	if err != nil {
		telemetryHost, telemetryPort = "127.0.0.1", o.TelemetryAddr
	}
	// The configuration reads these itself (${env:...}).
	env := []string{"OTELCOL_OTLP_GRPC_ADDR=" + o.OTLPGRPCAddr, "OTELCOL_OTLP_HTTP_ADDR=" + o.OTLPHTTPAddr,
		"OTELCOL_METRICS_ADDR=" + o.MetricsAddr, "OTELCOL_HEALTH_ADDR=" + o.HealthAddr,
		"OTELCOL_TELEMETRY_HOST=" + telemetryHost, "OTELCOL_TELEMETRY_PORT=" + telemetryPort,
		"OTELCOL_JAEGER_ENDPOINT=" + DialAddr(c.Jaeger.OTLPGRPCAddr),
		"OTELCOL_SAMPLE_PERCENT=" + strconv.FormatFloat(o.SamplePercent, 'f', -1, 64),
		"OTELCOL_DECISION_WAIT=" + o.DecisionWait.String(),
		"OTELCOL_NUM_TRACES=" + strconv.Itoa(o.NumTraces),
		"GOGC=" + OtelcolGOGC, "GOMEMLIMIT=" + OtelcolGOMEMLIMIT}
	return Component{
		Name: "otelcol", Path: filepath.Join(c.BinDir, "otelcol"), Args: []string{"--config", "file:" + o.Config},
		Env:    env,
		Listen: []string{o.OTLPGRPCAddr, o.OTLPHTTPAddr, o.MetricsAddr, o.HealthAddr, o.TelemetryAddr},
		// The health check answers 200 once every pipeline runs.
		ReadyURL:  "http://" + DialAddr(o.HealthAddr) + "/",
		DependsOn: []string{"jaeger"},
		Hint:      "make otelcol (OBS=1)",
		Prepare:   func(context.Context, Logf) error { return readable(o.Config, "collector config (OTELCOL_CONFIG)") },
	}
}

// otlpEnv is the environment that sends a service's spans to the
// collector (standard OpenTelemetry SDK variables).
func (c Config) otlpEnv() []string {
	return []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + DialAddr(c.Otelcol.OTLPHTTPAddr),
		"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"}
}
