// Package telemetry sets up tracing and metrics for a carteiro process:
// an OpenTelemetry tracer provider configured from the standard OTEL_*
// variables (exporting over OTLP when an endpoint is set), W3C trace
// context and baggage propagation, and a Prometheus registry served with
// exemplars. It also instruments the clients the processes share: the
// pgx pool and the Redis client.
package telemetry
