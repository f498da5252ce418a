package devstack

import (
	"fmt"
	"os"

	"github.com/carteiro/carteiro/internal/nginxtemplate"
)

// PrometheusVars are the values the prometheus component renders
// observability/prometheus/prometheus.native.yml.template with: the first
// api and worker instances' internal listeners, the nginx, Postgres and
// Redis exporters, Alertmanager, the collector's span metrics and its own
// metrics, the interval and the rules folder (RulesDir).
func (c Config) PrometheusVars() map[string]string {
	return map[string]string{
		"API_METRICS_TARGET":       DialAddr(c.APIInternalAddrs[0]),
		"WORKER_METRICS_TARGET":    DialAddr(c.WorkerInternalAddrs[0]),
		"NGINX_EXPORTER_TARGET":    DialAddr(c.NginxExporter.Listen),
		"POSTGRES_EXPORTER_TARGET": DialAddr(c.PostgresExporter.Listen),
		"REDIS_EXPORTER_TARGET":    DialAddr(c.RedisExporter.Listen),
		"ALERTMANAGER_TARGET":      DialAddr(c.Alertmanager.Listen),
		"OTELCOL_METRICS_TARGET":   DialAddr(c.Otelcol.MetricsAddr),
		"OTELCOL_TELEMETRY_TARGET": DialAddr(c.Otelcol.TelemetryAddr),
		"SCRAPE_INTERVAL":          c.Prometheus.ScrapeInterval,
		"RULES_DIR":                c.RulesDir(),
	}
}

// RenderPrometheus renders the scrape configuration template into out
// with c.PrometheusVars (${NAME} and $NAME, as envsubst). A ${NAME} left
// over is an error: the template wants a value the stack does not give.
func (c Config) RenderPrometheus(out string) error {
	b, err := os.ReadFile(c.Prometheus.Template)
	if err != nil {
		return fmt.Errorf("Prometheus template (PROMETHEUS_TEMPLATE): %w", err)
	}
	vars := c.PrometheusVars()
	text := nginxtemplate.Expand(string(b), vars)
	if left := placeholderRe.FindAllString(text, -1); len(left) > 0 {
		return fmt.Errorf("%s: placeholders %v are not provided (only %v)", c.Prometheus.Template, left, sortedKeys(vars))
	}
	return writeFileAtomic(out, []byte(text))
}
