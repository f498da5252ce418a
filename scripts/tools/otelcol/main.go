// Command otelcol is carteiro's OpenTelemetry Collector: the collector's own
// command line (go.opentelemetry.io/collector/otelcol) with exactly the
// components observability/otelcol/config.yaml uses, and nothing else.
//
// It is built by `make otelcol` into bin/otelcol for the native stack
// (`make dev OBS=1`, the end-to-end tests) and copied into the compose
// test's stand-in image; compose itself runs the official
// otel/opentelemetry-collector-contrib image (.env OTELCOL_IMAGE) with the
// same configuration file. Every component comes from one collector release
// (v0.161.0; core's stable modules v1.67.0), the one where the contrib
// components below all resolve on the Go module proxy. The servicegraph
// connector is not served there, so it is not part of this build.
//
//	bin/otelcol --config observability/otelcol/config.yaml
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/envprovider"
	"go.opentelemetry.io/collector/confmap/provider/fileprovider"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/connector/forwardconnector"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/otlpexporter"
	"go.opentelemetry.io/collector/extension"
	"go.opentelemetry.io/collector/otelcol"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/batchprocessor"
	"go.opentelemetry.io/collector/processor/memorylimiterprocessor"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/service/telemetry/otelconftelemetry"

	"github.com/open-telemetry/opentelemetry-collector-contrib/connector/spanmetricsconnector"
	"github.com/open-telemetry/opentelemetry-collector-contrib/exporter/prometheusexporter"
	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/healthcheckextension"
	"github.com/open-telemetry/opentelemetry-collector-contrib/processor/tailsamplingprocessor"
)

// version is the collector release every component comes from (go.mod).
const version = "0.161.0"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "otelcol:", err)
		os.Exit(1)
	}
}

// run executes the collector's command line (args[0] is the program name):
// `--config FILE` runs the collector until ctx ends; `validate`, `components`
// and `print-config` are the collector's own subcommands.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	cmd := otelcol.NewCommand(otelcol.CollectorSettings{
		BuildInfo: component.BuildInfo{
			Command:     "otelcol",
			Description: "carteiro's OpenTelemetry Collector",
			Version:     version,
		},
		Factories: components,
		// ctx carries the signals: the collector's own handler would
		// race with it.
		DisableGracefulShutdown: true,
		ConfigProviderSettings: otelcol.ConfigProviderSettings{
			ResolverSettings: confmap.ResolverSettings{
				ProviderFactories: []confmap.ProviderFactory{
					fileprovider.NewFactory(),
					envprovider.NewFactory(),
				},
				DefaultScheme: "env",
			},
		},
	})
	cmd.SetArgs(args[1:])
	cmd.SetOut(stdout)
	return cmd.ExecuteContext(ctx)
}

// components lists the factories of the components the configuration uses:
// OTLP in, memory limiter, tail sampling and batch, the span-metrics and
// forward connectors, OTLP out (to Jaeger) and the Prometheus exporter (a
// scrape endpoint), and the health-check extension (readiness).
func components() (otelcol.Factories, error) {
	var (
		f   otelcol.Factories
		err error
	)
	if f.Receivers, err = otelcol.MakeFactoryMap[receiver.Factory](otlpreceiver.NewFactory()); err != nil {
		return f, err
	}
	if f.Processors, err = otelcol.MakeFactoryMap[processor.Factory](
		memorylimiterprocessor.NewFactory(),
		tailsamplingprocessor.NewFactory(),
		batchprocessor.NewFactory(),
	); err != nil {
		return f, err
	}
	if f.Connectors, err = otelcol.MakeFactoryMap[connector.Factory](
		spanmetricsconnector.NewFactory(),
		forwardconnector.NewFactory(),
	); err != nil {
		return f, err
	}
	if f.Exporters, err = otelcol.MakeFactoryMap[exporter.Factory](
		otlpexporter.NewFactory(),
		prometheusexporter.NewFactory(),
	); err != nil {
		return f, err
	}
	if f.Extensions, err = otelcol.MakeFactoryMap[extension.Factory](healthcheckextension.NewFactory()); err != nil {
		return f, err
	}
	f.Telemetry = otelconftelemetry.NewFactory()
	return f, nil
}
