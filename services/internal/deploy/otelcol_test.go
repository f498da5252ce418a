package deploy

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/carteiro/carteiro/internal/devstack"
	"github.com/carteiro/carteiro/services/internal/testenv"
)

const (
	otelcolConfig = "observability/otelcol/config.yaml"
	otelcolTools  = "scripts/tools/otelcol"
)

// otelcolKinds are the sections of a collector configuration that name
// components, as `otelcol components` lists them.
var otelcolKinds = []string{"receivers", "processors", "exporters", "connectors", "extensions"}

// otelcolConfigFile is the part of observability/otelcol/config.yaml the
// tests read: every component section, and the tail-sampling policies.
type otelcolConfigFile struct {
	Receivers, Processors, Exporters, Connectors, Extensions map[string]yaml.Node
	Service                                                  struct {
		Pipelines map[string]struct{ Receivers, Processors, Exporters []string }
		Telemetry struct {
			Metrics struct {
				Level   string
				Readers []struct {
					Pull struct {
						Exporter struct {
							Prometheus *struct {
								Host, Port        string
								WithoutScopeInfo  bool `yaml:"without_scope_info"`
								WithoutTypeSuffix bool `yaml:"without_type_suffix"`
								WithoutUnits      bool `yaml:"without_units"`
							}
						}
					}
				}
			}
		}
	}
}

func readOtelcolConfig(t *testing.T) otelcolConfigFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), otelcolConfig))
	if err != nil {
		t.Fatal(err)
	}
	var c otelcolConfigFile
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("%s: %v", otelcolConfig, err)
	}
	return c
}

// types are the component types a configuration uses, by kind (an id is
// type[/name]).
func (c otelcolConfigFile) types() map[string][]string {
	out := map[string][]string{}
	for kind, section := range map[string]map[string]yaml.Node{
		"receivers": c.Receivers, "processors": c.Processors, "exporters": c.Exporters,
		"connectors": c.Connectors, "extensions": c.Extensions,
	} {
		for id := range section {
			typ, _, _ := strings.Cut(id, "/")
			if !slices.Contains(out[kind], typ) {
				out[kind] = append(out[kind], typ)
			}
		}
		slices.Sort(out[kind])
	}
	return out
}

// TestOtelcolComponents: bin/otelcol (scripts/tools/otelcol) has exactly
// the components observability/otelcol/config.yaml uses, and accepts the
// file as the native stack runs it (every variable at its default).
func TestOtelcolComponents(t *testing.T) {
	bin := testenv.Built(t, "otelcol", "otelcol")
	cfg := readOtelcolConfig(t)

	out, err := exec.Command(bin, "components").Output()
	if err != nil {
		t.Fatalf("otelcol components: %v", err)
	}
	var listed struct {
		Receivers, Processors, Exporters, Connectors, Extensions []struct{ Name string }
	}
	if err := yaml.Unmarshal(out, &listed); err != nil {
		t.Fatalf("otelcol components: %v\n%s", err, out)
	}
	used := cfg.types()
	byKind := map[string][]struct{ Name string }{"receivers": listed.Receivers, "processors": listed.Processors,
		"exporters": listed.Exporters, "connectors": listed.Connectors, "extensions": listed.Extensions}
	for _, kind := range otelcolKinds {
		var got []string
		for _, c := range byKind[kind] {
			got = append(got, c.Name)
		}
		slices.Sort(got)
		if !slices.Equal(got, used[kind]) {
			t.Errorf("bin/otelcol %s: got %v, want exactly the ones %s uses, %v", kind, got, otelcolConfig, used[kind])
		}
	}

	validate := exec.Command(bin, "validate", "--config", "file:"+filepath.Join(repoRoot(t), otelcolConfig))
	validate.Env = withoutOtelcolEnv(os.Environ())
	if out, err := validate.CombinedOutput(); err != nil {
		t.Errorf("otelcol validate %s: %v\n%s", otelcolConfig, err, out)
	}
}

// withoutOtelcolEnv is environ less the collector's own variables.
func withoutOtelcolEnv(environ []string) []string {
	var out []string
	for _, kv := range environ {
		if !strings.HasPrefix(kv, "OTELCOL_") {
			out = append(out, kv)
		}
	}
	return out
}

// TestOtelcolPipeline: span metrics see every span, before sampling; the
// sampled pipeline keeps errors, dead letters, traces slower than the
// delivery objective (5 s, observability/README.md) and a share of the
// rest that defaults to 100 %; the kept traces go to Jaeger.
func TestOtelcolPipeline(t *testing.T) {
	cfg := readOtelcolConfig(t)
	p := cfg.Service.Pipelines
	if g := p["traces"]; !slices.Equal(g.Receivers, []string{"otlp"}) || !slices.Equal(g.Processors, []string{"memory_limiter"}) ||
		!slices.Equal(g.Exporters, []string{"span_metrics", "forward"}) {
		t.Errorf("pipeline traces: got %+v, want otlp → memory_limiter → span_metrics and forward", g)
	}
	if g := p["traces/sampled"]; !slices.Equal(g.Receivers, []string{"forward"}) || !slices.Equal(g.Processors, []string{"tail_sampling", "batch"}) ||
		!slices.Equal(g.Exporters, []string{"otlp_grpc/jaeger"}) {
		t.Errorf("pipeline traces/sampled: got %+v, want forward → tail_sampling → batch → otlp_grpc/jaeger", g)
	}
	if g := p["metrics/spanmetrics"]; !slices.Equal(g.Receivers, []string{"span_metrics"}) || !slices.Equal(g.Exporters, []string{"prometheus"}) {
		t.Errorf("pipeline metrics/spanmetrics: got %+v, want span_metrics → prometheus", g)
	}

	// Jaeger is beside the collector in every stack carteiro starts:
	// compressing each span for it would only cost both CPU.
	var jaeger struct{ Compression string }
	if node := cfg.Exporters["otlp_grpc/jaeger"]; node.Decode(&jaeger) != nil || jaeger.Compression != "${env:OTELCOL_JAEGER_COMPRESSION:-none}" {
		t.Errorf("otlp_grpc/jaeger compression: got %q, want ${env:OTELCOL_JAEGER_COMPRESSION:-none}", jaeger.Compression)
	}

	// Jaeger's OTLP/gRPC receiver refuses a message over 4 MiB (gRPC's
	// default): the batches sent to it must stay well below that, and an
	// unbounded send_batch_max_size (0) lets one grow past any size.
	var batch struct {
		Size    int `yaml:"send_batch_size"`
		MaxSize int `yaml:"send_batch_max_size"`
	}
	batchNode := cfg.Processors["batch"]
	if err := batchNode.Decode(&batch); err != nil {
		t.Fatal(err)
	}
	if batch.MaxSize <= 0 || batch.MaxSize > 4096 || batch.Size > batch.MaxSize {
		t.Errorf("batch: got send_batch_size %d, send_batch_max_size %d; want a max of 1 to 4,096 spans (about 510 bytes each, under Jaeger's 4 MiB) and the size within it",
			batch.Size, batch.MaxSize)
	}

	var ts struct {
		DecisionWait       string `yaml:"decision_wait"`
		NumTraces          string `yaml:"num_traces"`
		SampleOnFirstMatch bool   `yaml:"sample_on_first_match"`
		Cache              struct {
			NonSampled int `yaml:"non_sampled_cache_size"`
		} `yaml:"decision_cache"`
		Policies []struct {
			Name, Type string
			StatusCode struct {
				StatusCodes []string `yaml:"status_codes"`
			} `yaml:"status_code"`
			OTTL struct {
				SpanEvent []string `yaml:"spanevent"`
			} `yaml:"ottl_condition"`
			Latency struct {
				ThresholdMS int `yaml:"threshold_ms"`
			}
			Probabilistic struct {
				Percentage string `yaml:"sampling_percentage"`
			}
		}
	}
	node := cfg.Processors["tail_sampling"]
	if err := node.Decode(&ts); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, pol := range ts.Policies {
		switch pol.Type {
		case "status_code":
			got[pol.Type] = strings.Join(pol.StatusCode.StatusCodes, ",")
		case "ottl_condition":
			got[pol.Type] = strings.Join(pol.OTTL.SpanEvent, ",")
		case "latency":
			got[pol.Type] = strconv.Itoa(pol.Latency.ThresholdMS)
		case "probabilistic":
			got[pol.Type] = pol.Probabilistic.Percentage
		default:
			got[pol.Type] = "?"
		}
	}
	want := map[string]string{
		"status_code":    "ERROR",
		"ottl_condition": `name == "dead-lettered"`, // the worker's span event (services/internal/delivery)
		"latency":        "5000",
		"probabilistic":  "${env:OTELCOL_SAMPLE_PERCENT:-100}",
	}
	for _, k := range sortedKeys(want) {
		if got[k] != want[k] {
			t.Errorf("tail_sampling policy %s: got %q, want %q", k, got[k], want[k])
		}
	}
	if len(got) != len(want) {
		t.Errorf("tail_sampling policies: got %v, want exactly %v", got, want)
	}
	// sample_on_first_match keeps the same traces only while no policy can
	// veto a match (drop, or an inverted match): every policy above keeps.
	if !ts.SampleOnFirstMatch {
		t.Errorf("tail_sampling sample_on_first_match: got false, want true (the share decides most traces alone)")
	}
	// A "not sampled" cache would drop the late spans of a trace judged
	// before its error arrived.
	if ts.Cache.NonSampled != 0 {
		t.Errorf("tail_sampling non_sampled_cache_size: got %d, want 0", ts.Cache.NonSampled)
	}
	// The SDKs export every 5 s: a trace over the 5 s objective must
	// still be whole at its decision.
	if ts.DecisionWait != "${env:OTELCOL_DECISION_WAIT:-30s}" {
		t.Errorf("tail_sampling decision_wait: got %q, want ${env:OTELCOL_DECISION_WAIT:-30s}", ts.DecisionWait)
	}
	// Capacity: the sizing rule of the configuration's header, on the
	// defaults (see otelcolRatedTracesPerSecond, otelcolHeldTraceBytes).
	numTraces := otelcolDefaultInt(t, "num_traces", ts.NumTraces, "OTELCOL_NUM_TRACES")
	wait, err := time.ParseDuration(otelcolDefault(t, "decision_wait", ts.DecisionWait, "OTELCOL_DECISION_WAIT"))
	if err != nil {
		t.Fatalf("tail_sampling decision_wait: %v", err)
	}
	if need := int(otelcolRatedTracesPerSecond * wait.Seconds()); numTraces < need {
		t.Errorf("tail_sampling num_traces: got %d by default, want at least %d (%d new traces a second × %v): more evict traces before their decision",
			numTraces, need, otelcolRatedTracesPerSecond, wait)
	}
	if held, soft := otelcolHeapNeed(numTraces), otelcolSoftLimitMiB(t, cfg); held > soft {
		t.Errorf("memory_limiter: soft limit %d MiB by default, want at least %d (num_traces %d × %d bytes + %d MiB for the rest): above it every span is refused",
			soft, held, numTraces, otelcolHeldTraceBytes, otelcolBaseHeapMiB)
	}

	// The worker still names its dead letters so.
	src, err := os.ReadFile(filepath.Join(repoRoot(t), "services", "internal", "delivery", "handle.go"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(src), `span.AddEvent("dead-lettered"`) {
		t.Error(`services/internal/delivery/handle.go: no span event "dead-lettered", which the dead-letters policy matches`)
	}
}

// The figures the capacity of tail sampling is sized with
// (observability/otelcol/config.yaml, "Sizing OTELCOL_NUM_TRACES").
const (
	// otelcolRatedTracesPerSecond is the rate of new traces the stack is
	// rated for, sustained: one trace per accepted message, more than twice
	// the highest rate the stack accepts and delivers at once with
	// observability on (1,029 a second in README "Performance"; a higher
	// accept rate held for long only grows the queue). Shorter
	// bursts above it are absorbed by the margin; longer ones evict, which
	// CarteiroTracesDroppedTooEarly reports.
	otelcolRatedTracesPerSecond = 2500
	// otelcolHeldTraceBytes is the collector's heap per trace held by tail
	// sampling, for the accept path's four spans: measured on bin/otelcol
	// v0.161.0 with synthetic traces of that shape, the heap after a
	// collection 125 MB with 20,000 held and 232 MB with 40,000.
	otelcolHeldTraceBytes = 5400
	// otelcolBaseHeapMiB is room for the rest of the collector's heap (4 MB
	// idle; the decision cache, batches in flight).
	otelcolBaseHeapMiB = 64
)

// otelcolHeapNeed is the heap, in MiB, of numTraces traces held by tail
// sampling and the rest of the collector.
func otelcolHeapNeed(numTraces int) int {
	return numTraces*otelcolHeldTraceBytes/(1<<20) + otelcolBaseHeapMiB
}

// otelcolSoftLimitMiB is memory_limiter's soft limit by default (limit_mib −
// spike_limit_mib): above it the collector refuses every span.
func otelcolSoftLimitMiB(t *testing.T, cfg otelcolConfigFile) int {
	t.Helper()
	var limiter struct {
		Limit string `yaml:"limit_mib"`
		Spike string `yaml:"spike_limit_mib"`
	}
	limiterNode := cfg.Processors["memory_limiter"]
	if err := limiterNode.Decode(&limiter); err != nil {
		t.Fatal(err)
	}
	return otelcolDefaultInt(t, "memory_limiter limit_mib", limiter.Limit, "OTELCOL_MEMORY_LIMIT_MIB") -
		otelcolDefaultInt(t, "memory_limiter spike_limit_mib", limiter.Spike, "OTELCOL_MEMORY_SPIKE_MIB")
}

// TestOtelcolGoRuntime: compose runs the collector with the Go runtime
// settings the native stack gives it (devstack.OtelcolGOGC and
// OtelcolGOMEMLIMIT), and the memory limit lies between what the held
// traces need by default and memory_limiter's soft limit: below the need
// the runtime would collect without end while tail sampling is full; above
// the soft limit memory_limiter would refuse spans before the runtime
// collects harder.
func TestOtelcolGoRuntime(t *testing.T) {
	otelcol := loadProject(t, baseFile, observabilityFile).Services["otelcol"]
	for key, want := range map[string]string{"GOGC": devstack.OtelcolGOGC, "GOMEMLIMIT": devstack.OtelcolGOMEMLIMIT} {
		if got, _ := envValue(otelcol, key); got != want {
			t.Errorf("compose otelcol %s: got %q, want %q (as natively, internal/devstack)", key, got, want)
		}
	}
	limit, ok := strings.CutSuffix(devstack.OtelcolGOMEMLIMIT, "MiB")
	mib, err := strconv.Atoi(limit)
	if !ok || err != nil {
		t.Fatalf("devstack.OtelcolGOMEMLIMIT: got %q, want a whole number of MiB such as 600MiB", devstack.OtelcolGOMEMLIMIT)
	}
	cfg := readOtelcolConfig(t)
	var ts struct {
		NumTraces string `yaml:"num_traces"`
	}
	node := cfg.Processors["tail_sampling"]
	if err := node.Decode(&ts); err != nil {
		t.Fatal(err)
	}
	numTraces := otelcolDefaultInt(t, "num_traces", ts.NumTraces, "OTELCOL_NUM_TRACES")
	if held, soft := otelcolHeapNeed(numTraces), otelcolSoftLimitMiB(t, cfg); mib < held || mib >= soft {
		t.Errorf("GOMEMLIMIT %d MiB: want at least the %d MiB that %d held traces and the rest need, and below memory_limiter's soft limit of %d MiB",
			mib, held, numTraces, soft)
	}
}

// otelcolDefaultRe is a whole-value ${env:NAME:-default}.
var otelcolDefaultRe = regexp.MustCompile(`^\$\{env:([A-Z0-9_]+):-([^}]*)\}$`)

// otelcolDefault returns the default of a setting that must be the knob
// name with a default (${env:name:-default}).
func otelcolDefault(t *testing.T, setting, value, name string) string {
	t.Helper()
	m := otelcolDefaultRe.FindStringSubmatch(value)
	if m == nil || m[1] != name {
		t.Fatalf("%s: got %q, want ${env:%s:-<default>}", setting, value, name)
	}
	return m[2]
}

func otelcolDefaultInt(t *testing.T, setting, value, name string) int {
	t.Helper()
	d := otelcolDefault(t, setting, value, name)
	n, err := strconv.Atoi(d)
	if err != nil {
		t.Fatalf("%s: default %q of %s: %v", setting, d, name, err)
	}
	return n
}

// TestOtelcolTelemetry: the collector serves its own metrics (level
// normal: the tail-sampling counters among them) for Prometheus, on one
// pull reader whose host and port are knobs with a loopback default, under
// its documented names (no unit or _total suffix, as its default reader).
func TestOtelcolTelemetry(t *testing.T) {
	m := readOtelcolConfig(t).Service.Telemetry.Metrics
	if m.Level != "normal" {
		t.Errorf("service.telemetry.metrics.level: got %q, want normal", m.Level)
	}
	if len(m.Readers) != 1 || m.Readers[0].Pull.Exporter.Prometheus == nil {
		t.Fatalf("service.telemetry.metrics.readers: got %+v, want one pull reader with a prometheus exporter", m.Readers)
	}
	p := m.Readers[0].Pull.Exporter.Prometheus
	if got := otelcolDefault(t, "telemetry prometheus host", p.Host, "OTELCOL_TELEMETRY_HOST"); got != "127.0.0.1" {
		t.Errorf("telemetry prometheus host: got default %q, want 127.0.0.1 (loopback)", got)
	}
	if got := otelcolDefault(t, "telemetry prometheus port", p.Port, "OTELCOL_TELEMETRY_PORT"); got != "8888" {
		t.Errorf("telemetry prometheus port: got default %q, want 8888 (the collector's own default)", got)
	}
	if !p.WithoutScopeInfo || !p.WithoutTypeSuffix || !p.WithoutUnits {
		t.Errorf("telemetry prometheus: got %+v, want without_scope_info, without_type_suffix and without_units (the rules use the collector's documented names)", *p)
	}
}

// TestOtelcolVersion: the collector is built from one release: the tools
// module's collector and contrib modules, and the version the binary
// reports.
func TestOtelcolVersion(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), otelcolTools, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^\s*(go\.opentelemetry\.io/collector/[a-z/]+|github\.com/open-telemetry/opentelemetry-collector-contrib/[a-z/]+) (v0\.[0-9]+\.[0-9]+)\b`)
	versions := map[string]bool{}
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		versions[m[2]] = true
	}
	if len(versions) != 1 {
		t.Fatalf("%s/go.mod: collector v0 modules at %v, want one release", otelcolTools, sortedKeys(versions))
	}
	release := sortedKeys(versions)[0]
	main, err := os.ReadFile(filepath.Join(repoRoot(t), otelcolTools, "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	if want := `const version = "` + strings.TrimPrefix(release, "v") + `"`; !strings.Contains(string(main), want) {
		t.Errorf("%s/main.go: want %s (the modules' release)", otelcolTools, want)
	}
}

// TestOtelcolCompose: compose's otelcol runs the same configuration file
// with its listeners where app, worker and frontend send their spans, the
// kept traces go to jaeger's OTLP/gRPC receiver, the share kept defaults to
// 100 %, and the collector accepts the file with compose's values.
func TestOtelcolCompose(t *testing.T) {
	merged := loadProject(t, baseFile, observabilityFile)
	otelcol := merged.Services["otelcol"]
	if want := []string{"--config", "file:/etc/otelcol/config.yaml"}; !slices.Equal([]string(otelcol.Command), want) {
		t.Errorf("otelcol command: got %v, want %v", otelcol.Command, want)
	}
	wantMount(t, otelcol, otelcolConfig, "/etc/otelcol/config.yaml")

	env := func(svc, key string) string {
		v, ok := envValue(merged.Services[svc], key)
		if !ok {
			t.Errorf("%s env %s: got unset, want it set", svc, key)
		}
		return v
	}
	port := func(svc, key string) string {
		_, p, err := net.SplitHostPort(strings.TrimPrefix(env(svc, key), "http://"))
		if err != nil {
			t.Errorf("%s env %s: got %q, want host:port", svc, key, env(svc, key))
		}
		return p
	}
	httpPort, grpcPort := port("otelcol", "OTELCOL_OTLP_HTTP_ADDR"), port("otelcol", "OTELCOL_OTLP_GRPC_ADDR")
	for _, svc := range []string{"app", "worker"} {
		if got, want := env(svc, "OTEL_EXPORTER_OTLP_ENDPOINT"), "http://otelcol:"+httpPort; got != want {
			t.Errorf("%s OTEL_EXPORTER_OTLP_ENDPOINT: got %q, want %q (otelcol's OTLP/HTTP receiver)", svc, got, want)
		}
	}
	snippet, err := os.ReadFile(filepath.Join(repoRoot(t), "nginx", "snippets", "tracing-otel.conf.template"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "endpoint otelcol:" + grpcPort + ";"; !strings.Contains(string(snippet), want) {
		t.Errorf("nginx/snippets/tracing-otel.conf.template: want %q (otelcol's OTLP/gRPC receiver)", want)
	}
	if got, want := env("otelcol", "OTELCOL_JAEGER_ENDPOINT"), "jaeger:"+port("jaeger", "JAEGER_OTLP_GRPC_ADDR"); got != want {
		t.Errorf("otelcol OTELCOL_JAEGER_ENDPOINT: got %q, want %q (jaeger's OTLP/gRPC receiver)", got, want)
	}
	if got := env("otelcol", "OTELCOL_SAMPLE_PERCENT"); got != "100" {
		t.Errorf("otelcol OTELCOL_SAMPLE_PERCENT: got %q, want 100 by default (CARTEIRO_TRACE_SAMPLE_PERCENT)", got)
	}

	bin := testenv.Built(t, "otelcol", "otelcol")
	validate := exec.Command(bin, "validate", "--config", "file:"+filepath.Join(repoRoot(t), otelcolConfig))
	validate.Env = withoutOtelcolEnv(os.Environ())
	for k, v := range otelcol.Environment {
		if v != nil {
			validate.Env = append(validate.Env, k+"="+*v)
		}
	}
	if out, err := validate.CombinedOutput(); err != nil {
		t.Errorf("otelcol validate %s with compose's environment: %v\n%s", otelcolConfig, err, out)
	}
}

// TestOtelcolImage: .env's OTELCOL_IMAGE is the official contrib image of
// the release the tools module builds, pinned by digest.
func TestOtelcolImage(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), otelcolTools, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*github\.com/open-telemetry/opentelemetry-collector-contrib/processor/tailsamplingprocessor v0\.([0-9]+\.[0-9]+)\b`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("%s/go.mod: no tailsamplingprocessor v0.x", otelcolTools)
	}
	got := readDotEnv(t)["OTELCOL_IMAGE"]
	want := regexp.MustCompile(`^otel/opentelemetry-collector-contrib:0\.` + regexp.QuoteMeta(string(m[1])) + `@sha256:[0-9a-f]{64}$`)
	if !want.MatchString(got) {
		t.Errorf(".env OTELCOL_IMAGE: got %q, want otel/opentelemetry-collector-contrib:0.%s@sha256:<digest>", got, m[1])
	}
}

// TestOtelcolEvictionCounted: OTELCOL_NUM_TRACES is tail sampling's
// capacity, and a trace evicted before its decision shows on the
// collector's own metrics. bin/otelcol runs the repository's configuration
// with room for 10 traces and receives 30, each with a span in error (which
// the errors policy would keep): 20 are evicted and counted by
// otelcol_processor_tail_sampling_sampling_trace_dropped_too_early, 10
// are decided and kept.
func TestOtelcolEvictionCounted(t *testing.T) {
	bin := testenv.Built(t, "otelcol", "otelcol")
	ports := &devstack.Ports{}
	defer ports.Close()
	addr := map[string]string{}
	for _, name := range []string{"OTELCOL_OTLP_GRPC_ADDR", "OTELCOL_OTLP_HTTP_ADDR", "OTELCOL_METRICS_ADDR",
		"OTELCOL_HEALTH_ADDR", "OTELCOL_TELEMETRY_ADDR", "OTELCOL_JAEGER_ENDPOINT"} {
		a, err := ports.Reserve()
		if err != nil {
			t.Fatal(err)
		}
		addr[name] = a
	}
	host, port, _ := net.SplitHostPort(addr["OTELCOL_TELEMETRY_ADDR"])
	cmd := exec.Command(bin, "--config", "file:"+filepath.Join(repoRoot(t), otelcolConfig))
	cmd.Env = append(withoutOtelcolEnv(os.Environ()),
		"OTELCOL_OTLP_GRPC_ADDR="+addr["OTELCOL_OTLP_GRPC_ADDR"], "OTELCOL_OTLP_HTTP_ADDR="+addr["OTELCOL_OTLP_HTTP_ADDR"],
		"OTELCOL_METRICS_ADDR="+addr["OTELCOL_METRICS_ADDR"], "OTELCOL_HEALTH_ADDR="+addr["OTELCOL_HEALTH_ADDR"],
		"OTELCOL_TELEMETRY_HOST="+host, "OTELCOL_TELEMETRY_PORT="+port,
		// Nothing listens there: the kept traces go nowhere, which this
		// test does not look at.
		"OTELCOL_JAEGER_ENDPOINT="+addr["OTELCOL_JAEGER_ENDPOINT"],
		"OTELCOL_NUM_TRACES=10", "OTELCOL_DECISION_WAIT=5s", "OTELCOL_LOG_LEVEL=error")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	for _, a := range addr {
		ports.Release(a)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("otelcol's log:\n%s", stderr.String())
		}
	}()
	waitFor(t, "the collector's health check", func() bool {
		res, err := http.Get("http://" + addr["OTELCOL_HEALTH_ADDR"] + "/")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})

	// 30 traces of one span in error, in one request.
	var spans []string
	for i := range 30 {
		spans = append(spans, fmt.Sprintf(`{"traceId":"%032x","spanId":"%016x","name":"POST /api/messages","kind":2,`+
			`"startTimeUnixNano":"1","endTimeUnixNano":"2","status":{"code":2}}`, i+1, i+1))
	}
	body := `{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"carteiro-api"}}]},` +
		`"scopeSpans":[{"spans":[` + strings.Join(spans, ",") + `]}]}]}`
	res, err := http.Post("http://"+addr["OTELCOL_OTLP_HTTP_ADDR"]+"/v1/traces", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/traces: got %d, want 200", res.StatusCode)
	}

	metric := func(text, name string) (float64, bool) {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(text)
		if m == nil {
			return 0, false
		}
		v, err := strconv.ParseFloat(m[1], 64)
		return v, err == nil
	}
	var text string
	waitFor(t, "the 30 traces' decisions on the collector's own metrics", func() bool {
		res, err := http.Get("http://" + addr["OTELCOL_TELEMETRY_ADDR"] + "/metrics")
		if err != nil {
			return false
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		text = string(b)
		dropped, _ := metric(text, "otelcol_processor_tail_sampling_sampling_trace_dropped_too_early")
		sampled, _ := metric(text, `otelcol_processor_tail_sampling_global_count_traces_sampled{decision="sampled",sampled="true"}`)
		return dropped+sampled >= 30
	})
	for _, c := range []struct {
		name string
		want float64
	}{
		{"otelcol_processor_tail_sampling_new_trace_id_received", 30},
		{"otelcol_processor_tail_sampling_sampling_trace_dropped_too_early", 20},
		{`otelcol_processor_tail_sampling_global_count_traces_sampled{decision="sampled",sampled="true"}`, 10},
	} {
		if got, ok := metric(text, c.name); !ok || got != c.want {
			t.Errorf("%s: got %v (present %v), want %v", c.name, got, ok, c.want)
		}
	}
}

// waitFor polls cond every 100 ms for up to a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
