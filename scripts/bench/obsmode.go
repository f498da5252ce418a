package main

// The observability modes a run measures (BENCH_MODES), in order.
const (
	// modeOff runs the stack without observability (OBS=0): no collector,
	// Jaeger or Prometheus; the services record no sampled trace.
	modeOff = "off"
	// modeOn is OBS=1 as make dev runs it: the collector keeps every trace
	// (OTELCOL_SAMPLE_PERCENT 100, its default) and sends it to Jaeger.
	// Every phase.
	modeOn = "on"
	// modeOnProduction is OBS=1 at the production share of ordinary traces
	// kept (OTELCOL_SAMPLE_PERCENT=productionSamplePercent;
	// observability/otelcol/config.yaml): phases 1 and 2 alone, for the
	// accept target's on ÷ off at the share a deployment runs with.
	modeOnProduction = "on-10"
)

// productionSamplePercent is the share of ordinary traces the collector keeps
// in production (observability/otelcol/config.yaml, OTELCOL_SAMPLE_PERCENT).
const productionSamplePercent = "10"

// modeObservability reports whether mode runs the observability stack.
func modeObservability(mode string) bool { return mode != modeOff }

// modeSamplePercent is the OTELCOL_SAMPLE_PERCENT mode gives the stack, or
// "" for the stack's default (100).
func modeSamplePercent(mode string) string {
	if mode == modeOnProduction {
		return productionSamplePercent
	}
	return ""
}

// modeAcceptOnly reports whether mode measures phases 1 and 2 alone,
// whatever BENCH_PHASES says.
func modeAcceptOnly(mode string) bool { return mode == modeOnProduction }
