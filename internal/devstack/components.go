package devstack

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
)

// Components are carteiro's native stack, in start order: with
// Observability jaeger, otelcol (the OpenTelemetry Collector, which sends
// it the traces it keeps) and prometheus first (so the api and the workers
// trace from their first request; prometheus after alertmanager, which
// mails through mailpit), mailpit (unless SKIP_MAILPIT), the api instances
// (api, api-2, ...), the worker instances, nginx, and with Observability
// the nginx, Postgres and Redis exporters. Down stops them in the reverse
// order: the entry point first, the SMTP sink after the workers have
// drained and Alertmanager has sent its last mail, the collector after the
// services' last spans, and Jaeger last.
func (c Config) Components() []Component { return c.components(false) }

// components returns the configured components, or with all every
// component this configuration could run (for Down and Status, which must
// find what an earlier `up` with OBS=1 started).
func (c Config) components(all bool) []Component {
	obs := c.Observability || all
	var cs []Component
	var obsEnv, apiObsEnv []string
	if obs {
		cs = append(cs, c.jaeger(), c.otelcol(), c.prometheus(), c.alertmanager(!c.SkipMailpit || all))
	}
	if c.Observability {
		obsEnv = c.otlpEnv()
		apiObsEnv = append(obsEnv, "JAEGER_UI_URL="+c.Jaeger.UIURL)
	}
	if !c.SkipMailpit || all {
		cs = append(cs, c.mailpit())
	}
	var apis []string
	for i := range c.APIHTTPAddrs {
		cs = append(cs, c.api(i, apiObsEnv, obs))
		apis = append(apis, instanceName("api", i))
	}
	for i := range c.WorkerInternalAddrs {
		cs = append(cs, c.worker(i, obsEnv, obs, !c.SkipMailpit || all))
	}
	cs = append(cs, c.nginx(apis))
	if obs {
		cs = append(cs, c.nginxExporter(), c.postgresExporter(), c.redisExporter())
	}
	return cs
}

// instanceName is api, api-2, api-3, ... for instance i (from 0).
func instanceName(kind string, i int) string {
	if i == 0 {
		return kind
	}
	return kind + "-" + strconv.Itoa(i+1)
}

func (c Config) jaeger() Component {
	j := c.Jaeger
	// The configuration reads these itself (${env:...}).
	env := []string{"JAEGER_OTLP_GRPC_ADDR=" + j.OTLPGRPCAddr, "JAEGER_OTLP_HTTP_ADDR=" + j.OTLPHTTPAddr,
		"JAEGER_QUERY_ADDR=" + j.QueryAddr, "JAEGER_QUERY_GRPC_ADDR=" + j.QueryGRPCAddr}
	listen := []string{j.OTLPGRPCAddr, j.OTLPHTTPAddr, j.QueryAddr, j.QueryGRPCAddr}
	if j.MetricsAddr != "" {
		m := DialAddr(j.MetricsAddr)
		host, port, _ := net.SplitHostPort(m)
		env = append(env, "JAEGER_METRICS_LEVEL="+j.MetricsLevel, "JAEGER_METRICS_HOST="+host, "JAEGER_METRICS_PORT="+port)
		listen = append(listen, m)
	} else {
		env = append(env, "JAEGER_METRICS_LEVEL=none")
	}
	return Component{
		Name: "jaeger", Path: filepath.Join(c.BinDir, "jaeger"), Args: []string{"--config", j.Config},
		Env: env, Listen: listen, ReadyURL: "http://" + DialAddr(j.QueryAddr) + "/",
		Hint:    "make jaeger (OBS=1)",
		Prepare: func(context.Context, Logf) error { return readable(j.Config, "Jaeger config (JAEGER_CONFIG)") },
	}
}

func (c Config) prometheus() Component {
	p := c.Prometheus
	cfg, data := filepath.Join(c.Dir, "prometheus.yml"), filepath.Join(c.Dir, "prometheus-data")
	return Component{
		Name: "prometheus", Path: p.Bin,
		Args: append([]string{"--config.file=" + cfg, "--storage.tsdb.path=" + data,
			"--storage.tsdb.retention.time=" + p.Retention, "--web.listen-address=" + p.Listen,
			"--enable-feature=exemplar-storage", "--web.enable-remote-write-receiver", "--web.enable-lifecycle"}, p.Args...),
		Listen: []string{p.Listen}, ReadyURL: "http://" + DialAddr(p.Listen) + "/-/ready",
		Hint: "apt-get install prometheus, or set PROMETHEUS_BIN",
		// It sends its alerts there; it stops first.
		DependsOn: []string{"alertmanager"},
		Prepare: func(context.Context, Logf) error {
			if err := c.RenderRules(); err != nil {
				return err
			}
			if err := c.RenderPrometheus(cfg); err != nil {
				return err
			}
			return os.MkdirAll(data, 0o755)
		},
	}
}

func (c Config) mailpit() Component {
	bin := filepath.Join(c.BinDir, "mailpit")
	return Component{
		Name: "mailpit", Path: bin,
		// No --database: Mailpit keeps a temporary one that it deletes on exit.
		Args: append([]string{"--smtp", c.MailpitSMTPAddr, "--listen", c.MailpitUIAddr,
			"--disable-version-check", "--block-remote-css-and-fonts",
			"--smtp-auth-accept-any", "--smtp-auth-allow-insecure", "--smtp-disable-rdns"}, c.MailpitArgs...),
		Listen: []string{c.MailpitSMTPAddr, c.MailpitUIAddr}, ReadyURL: "http://" + DialAddr(c.MailpitUIAddr) + "/readyz",
		Hint: "make build tools",
	}
}

func (c Config) api(i int, obsEnv []string, obs bool) Component {
	bin := filepath.Join(c.BinDir, "api")
	http, internal := c.APIHTTPAddrs[i], c.APIInternalAddrs[i]
	comp := Component{
		Name: instanceName("api", i), Path: bin,
		Env:    append(append([]string{"HTTP_ADDR=" + http, "INTERNAL_ADDR=" + internal}, c.memLimitEnv()...), obsEnv...),
		Listen: []string{http, internal}, ReadyURL: "http://" + DialAddr(internal) + "/readyz",
		Hint: "make build",
	}
	if obs {
		comp.DependsOn = []string{"otelcol"}
	}
	if i == 0 && !c.SkipDBSetup {
		comp.Prepare = func(ctx context.Context, _ Logf) error { return c.SetupDatabase(ctx) }
	}
	return comp
}

// WorkerGOMAXPROCS is the worker's GOMAXPROCS, the same in compose and
// the Kubernetes base: how many threads run its Go code at once. The
// worker waits on round trips (SMTP replies, Postgres, Redis) and uses
// about half a core at the bench's drain of 2,600 messages a second; with
// a second P the runtime woke an idle thread for each goroutine made
// ready (every SMTP reply), which spun and parked again: 12.8 % of its
// CPU in the scheduler. With one, a tenth less CPU a message and the
// drain's rate unchanged (bench/README.md); more throughput is more
// replicas.
const WorkerGOMAXPROCS = "1"

func (c Config) worker(i int, obsEnv []string, obs, mailpit bool) Component {
	bin := filepath.Join(c.BinDir, "worker")
	internal := c.WorkerInternalAddrs[i]
	env := append([]string{"INTERNAL_ADDR=" + internal, "SMTP_HOST=" + c.SMTPHost, "SMTP_PORT=" + c.SMTPPort}, c.memLimitEnv()...)
	env = append(env, "GOMAXPROCS="+WorkerGOMAXPROCS)
	if c.WorkerName != "" && i > 0 {
		env = append(env, "WORKER_NAME="+c.WorkerName+"-"+strconv.Itoa(i+1))
	}
	comp := Component{
		Name: instanceName("worker", i), Path: bin, Env: append(env, obsEnv...),
		Listen: []string{internal}, ReadyURL: "http://" + DialAddr(internal) + "/healthz", Hint: "make build",
		Prepare: func(ctx context.Context, logf Logf) error {
			if err := c.CheckRedis(ctx); err != nil {
				logf("warning: %v", err)
			}
			return nil
		},
	}
	if obs {
		comp.DependsOn = append(comp.DependsOn, "otelcol")
	}
	if mailpit {
		// The SMTP sink outlives the workers, which finish their sends.
		comp.DependsOn = append(comp.DependsOn, "mailpit")
	}
	return comp
}

func (c Config) nginx(apis []string) Component {
	n, _ := c.NginxConfig() // its errors are Prepare's
	return Component{
		Name: "nginx", Path: n.Bin, Args: n.Args(), DependsOn: apis, Hint: "apt-get install nginx, or set NGINX_BIN",
		Settings: n.Settings(),
		Listen:   []string{c.NginxListen, c.NginxStatusAddr},
		ReadyURL: "http://" + DialAddr(c.NginxListen) + "/nginx-health",
		Prepare: func(ctx context.Context, logf Logf) error {
			n, err := c.NginxConfig()
			if err != nil {
				return err
			}
			if n.User == "root" && c.Nginx.User == "" {
				logf("warning: %s or %s is not readable by other users; nginx workers will run as root (set NGINX_USER to override)",
					c.Nginx.WebRoot, n.Dir)
			}
			if err := n.Render(); err != nil {
				return err
			}
			return n.Test(ctx)
		},
	}
}

func (c Config) nginxExporter() Component {
	e := c.NginxExporter
	comp := Component{
		Name: "nginx-exporter", Path: e.Bin, DependsOn: []string{"nginx"},
		// Flag spelling shared by Debian's 0.11 (Go flag) and upstream 1.x (kingpin).
		Args:   []string{"--nginx.scrape-uri=http://" + DialAddr(c.NginxStatusAddr) + "/nginx-status", "--web.listen-address=" + e.Listen},
		Listen: []string{e.Listen}, ReadyURL: "http://" + DialAddr(e.Listen) + "/metrics",
	}
	switch {
	case e.Skip:
		comp.Skip = "SKIP_NGINX_EXPORTER=1"
	case e.Bin == "":
		comp.Skip = "no nginx exporter (apt-get install prometheus-nginx-exporter, or set NGINX_EXPORTER_BIN); the nginx job will be down"
	}
	return comp
}

// readable checks that the file at path can be opened for reading; what
// names it in the error.
func readable(path, what string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return f.Close()
}
