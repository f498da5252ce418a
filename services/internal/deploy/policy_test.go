package deploy

import (
	"net"
	"regexp"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
)

// The deployment policy, each rule asserted on the core file alone and on
// the core file merged with the observability overlay (projects):
//
//	only frontend publishes a non-loopback port   TestPolicyEdge, TestPublishedPorts
//	db and queue only on internal networks        TestPolicyBackingServicesInternal, TestNetworks
//	the api is not reachable from outside         TestPolicyAPINotReachable
//	every service pinned by version               TestImagesPinned, TestDotEnv, TestDockerfile
//	non-root, read_only, cap_drop ALL,
//	no-new-privileges, healthchecks               TestHardening (documented exceptions only)
//	no POSTGRES_HOST_AUTH_METHOD=trust            TestNoTrustAuth
//	secrets not inlined                           TestSecretsAreFiles, TestPolicyNoInlineCredentials
//	Redis requires auth                           TestQueueConfig

// loopback reports whether a published port's host_ip keeps it on the
// machine itself ("" and 0.0.0.0 mean every interface).
func loopback(hostIP string) bool {
	ip := net.ParseIP(hostIP)
	return ip != nil && ip.IsLoopback()
}

// TestPolicyEdge: whatever the port tables say, frontend is the only
// service with a port on a non-loopback address, and no service borrows
// the host's or another container's network namespace (whose ports it
// would then share).
func TestPolicyEdge(t *testing.T) {
	for label, p := range projects(t) {
		t.Run(label, func(t *testing.T) {
			public := 0
			for _, name := range sortedServiceNames(p) {
				svc := p.Services[name]
				for _, port := range svc.Ports {
					if loopback(port.HostIP) {
						continue
					}
					if name != "frontend" {
						t.Errorf("%s publishes %s:%s→%d: want only frontend on a non-loopback address",
							name, port.HostIP, port.Published, port.Target)
						continue
					}
					public++
				}
				if m := svc.NetworkMode; m == "host" || strings.HasPrefix(m, "service:") || strings.HasPrefix(m, "container:") {
					t.Errorf("%s network_mode: got %q, want its own network namespace", name, m)
				}
			}
			if public == 0 {
				t.Errorf("frontend: got no public port, want the edge published")
			}
		})
	}
}

// TestPolicyBackingServicesInternal: Postgres and Redis sit only on their
// own internal networks, with both files.
func TestPolicyBackingServicesInternal(t *testing.T) {
	want := map[string]string{"db": "banco", "queue": "fila"}
	for label, p := range projects(t) {
		for _, name := range sortedKeys(want) {
			t.Run(label+"/"+name, func(t *testing.T) {
				svc := p.Services[name]
				if got := sortedKeys(svc.Networks); len(got) != 1 || got[0] != want[name] {
					t.Errorf("networks: got %v, want only %s", got, want[name])
				}
				for net := range svc.Networks {
					if !p.Networks[net].Internal {
						t.Errorf("network %s: got internal=false, want internal=true", net)
					}
				}
				if len(svc.Ports) > 0 {
					t.Errorf("ports: got %v, want none", svc.Ports)
				}
			})
		}
	}
}

// portOf is the port of a listen address such as ":8080" or "app:8080".
func portOf(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	return port
}

// TestPolicyAPINotReachable: app publishes nothing; apart from the internal
// networks, it is only on `web`, where its one neighbour is frontend; and
// frontend proxies to its public listener, never to the internal one
// (/metrics, /readyz).
func TestPolicyAPINotReachable(t *testing.T) {
	for label, p := range projects(t) {
		t.Run(label, func(t *testing.T) {
			app := p.Services["app"]
			if len(app.Ports) > 0 {
				t.Errorf("app ports: got %v, want none", app.Ports)
			}
			for net := range app.Networks {
				if p.Networks[net].Internal {
					continue
				}
				if net != "web" {
					t.Errorf("app on non-internal network %s: want only web besides internal networks", net)
					continue
				}
				for _, name := range sortedServiceNames(p) {
					if _, on := p.Services[name].Networks[net]; on && name != "app" && name != "frontend" {
						t.Errorf("%s on web beside app: want only frontend there", name)
					}
				}
			}
			httpAddr, _ := envValue(app, "HTTP_ADDR")
			internalAddr, _ := envValue(app, "INTERNAL_ADDR")
			upstream, _ := envValue(p.Services["frontend"], "API_UPSTREAM")
			host, _, _ := net.SplitHostPort(upstream)
			if host != "app" || portOf(upstream) == "" || portOf(upstream) != portOf(httpAddr) {
				t.Errorf("frontend API_UPSTREAM %q: want app:<port of HTTP_ADDR %q>", upstream, httpAddr)
			}
			if portOf(internalAddr) == "" || portOf(internalAddr) == portOf(httpAddr) {
				t.Errorf("app INTERNAL_ADDR %q: want its own port, not HTTP_ADDR's %q", internalAddr, httpAddr)
			}
		})
	}
}

var (
	// a URL with a password: scheme://user:password@host
	urlCredentials = regexp.MustCompile(`[a-z][a-z0-9+.-]*://[^/@\s:]*:[^/@\s]+@`)
	// a password flag, or Redis' requirepass directive opening a line of
	// configuration (a here-document), followed by its value
	passwordFlag = regexp.MustCompile(`(?im)(--requirepass|--masterauth|--pass(?:word)?|(?:^|\s)-a|^requirepass)[=\s]+("[^"]*"|'[^']*'|\S+)`)
	// an environment or shell assignment: PGPASSWORD=x, password=$(...)
	passwordAssign = regexp.MustCompile(`(?i)\b[A-Z_]*(?:PASSWORD|PASS|SECRET|TOKEN|AUTH)=(\$\([^)]*\)|"[^"]*"|'[^']*'|[^\s"']*)`)
	// a command substitution that reads a compose secret, in the one form
	// canonicalSecretReads gives every read that only transforms it
	secretRead = regexp.MustCompile(`^\$\(cat /run/secrets/[a-z_]+\)$`)
	// a shell variable assigned a command substitution
	shellAssign = regexp.MustCompile(`(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=(\$\([^)]*\))`)
	// a shell variable's value
	shellVar = regexp.MustCompile(`^\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?$`)
	// the inside of a command substitution that reads a compose secret
	// and only transforms it: cat, sed or od on its path, then a pipeline
	// with no other command substitution, backquote or ;
	secretPipeline = regexp.MustCompile(`^(?:cat|sed(?: -e)? '[^']*'(?: -e '[^']*')*|od(?: -[A-Za-z0-9]+)*) (/run/secrets/[a-z_]+)(?: \|(?:[^$;` + "`" + `]|\$[^(])*)?$`)
)

// canonicalSecretReads rewrites each command substitution of text that
// reads a compose secret through secretPipeline as $(cat /run/secrets/x),
// so that the patterns above, which cannot balance parentheses, see one
// form however the secret is encoded. The substitution's end is found
// past single-quoted text (a sed expression may hold parentheses).
func canonicalSecretReads(text string) string {
	var b strings.Builder
	for {
		i := strings.Index(text, "$(")
		if i < 0 {
			return b.String() + text
		}
		end, quoted := -1, false
		for j := i + 2; j < len(text) && end < 0; j++ {
			switch {
			case text[j] == '\'':
				quoted = !quoted
			case text[j] == ')' && !quoted:
				end = j
			}
		}
		if end < 0 {
			return b.String() + text
		}
		b.WriteString(text[:i])
		if m := secretPipeline.FindStringSubmatch(text[i+2 : end]); m != nil {
			b.WriteString("$(cat " + m[1] + ")")
		} else {
			b.WriteString(text[i : end+1])
		}
		text = text[end+1:]
	}
}

// inlineCredentials lists the credentials text (a shell command, a
// healthcheck, a label) gives inline rather than from /run/secrets: a
// value is from a secret when it reads one ($(cat /run/secrets/x), or a
// pipeline that only transforms it: secretPipeline), names its path, or is
// a shell variable text assigns such a read.
func inlineCredentials(text string) []string {
	text = canonicalSecretReads(text)
	secretVars := map[string]bool{}
	for _, m := range shellAssign.FindAllStringSubmatch(text, -1) {
		if secretRead.MatchString(m[2]) {
			secretVars[m[1]] = true
		}
	}
	fromSecret := func(v string) bool {
		v = strings.Trim(v, `"'`)
		if m := shellVar.FindStringSubmatch(v); m != nil {
			return secretVars[m[1]]
		}
		return strings.HasPrefix(v, "/run/secrets/") || secretRead.MatchString(v)
	}
	var out []string
	for _, m := range passwordFlag.FindAllStringSubmatch(text, -1) {
		if !fromSecret(m[2]) {
			out = append(out, "a password inline ("+strings.TrimSpace(m[1])+" "+m[2]+")")
		}
	}
	for _, m := range passwordAssign.FindAllStringSubmatch(text, -1) {
		if !fromSecret(m[1]) {
			out = append(out, strings.TrimSpace(m[0])+" inline")
		}
	}
	if urlCredentials.MatchString(text) {
		out = append(out, "a URL with a password")
	}
	return out
}

// TestPolicyNoInlineCredentials: no password in a command line, a
// healthcheck, an entrypoint, a label or a URL in the environment; the
// ones that need one read it from /run/secrets.
func TestPolicyNoInlineCredentials(t *testing.T) {
	for label, p := range projects(t) {
		for _, name := range sortedServiceNames(p) {
			svc := p.Services[name]
			t.Run(label+"/"+name, func(t *testing.T) {
				var texts []string
				texts = append(texts, strings.Join(svc.Command, " "), strings.Join(svc.Entrypoint, " "))
				if svc.HealthCheck != nil {
					texts = append(texts, strings.Join(svc.HealthCheck.Test, " "))
				}
				for k, v := range svc.Labels {
					texts = append(texts, k+"="+v)
				}
				for _, text := range texts {
					for _, c := range inlineCredentials(text) {
						t.Errorf("%q: got %s, want it read from /run/secrets", text, c)
					}
				}
				for _, k := range sortedKeys(svc.Environment) {
					if v, _ := envValue(svc, k); urlCredentials.MatchString(v) {
						t.Errorf("env %s: got a URL with a password %q, want the password in a secret file", k, v)
					}
				}
				if len(svc.EnvFiles) > 0 {
					t.Errorf("env_file: got %v, want none (secrets are compose secrets)", svc.EnvFiles)
				}
			})
		}
	}
}

func TestPolicyHelpers(t *testing.T) {
	for _, c := range []struct {
		hostIP string
		want   bool
	}{{"127.0.0.1", true}, {"::1", true}, {"127.0.0.2", true}, {"", false}, {"0.0.0.0", false}, {"::", false}, {"192.168.1.2", false}} {
		if got := loopback(c.hostIP); got != c.want {
			t.Errorf("loopback(%q): got %v, want %v", c.hostIP, got, c.want)
		}
	}
	for _, c := range []struct {
		text string
		bad  bool
	}{
		{`exec redis-server --requirepass "$(cat /run/secrets/redis_password)"`, false},
		{`exec redis-server --requirepass hunter2`, true},
		{`redis-server --requirepass=hunter2`, true},
		{`REDISCLI_AUTH="$(cat /run/secrets/redis_password)" redis-cli ping`, false},
		{`REDISCLI_AUTH=hunter2 redis-cli ping`, true},
		{`redis-cli -a hunter2 ping`, true},
		{`PGPASSWORD=x pg_isready`, true},
		{`pg_isready -h 127.0.0.1 -p 5432 -U carteiro -d carteiro`, false},
		{`--nginx.scrape-uri=http://frontend:8081/nginx-status`, false},
		{`wget http://u:p@host/`, true},
		{"password=$(sed 's/[\\\\\"]/\\\\&/g' /run/secrets/redis_password) &&\nexec redis-server - <<EOF\nrequirepass \"$password\"\nEOF", false},
		{"password=$(cat /run/secrets/redis_password) && exec redis-server - <<EOF\nrequirepass \"$password\"\nEOF", false},
		{"exec redis-server - <<EOF\nrequirepass hunter2\nEOF", true},
		{"exec redis-server - <<EOF\nrequirepass \"$password\"\nEOF", true},
		{"password=hunter2 && exec redis-server - <<EOF\nrequirepass \"$password\"\nEOF", true},
		{"password=$(echo hunter2) && exec redis-server - <<EOF\nrequirepass \"$password\"\nEOF", true},
		{"password=$(od -An -v -tx1 /run/secrets/redis_password | tr -d ' \\n' | sed -e 's/../\\\\x&/g' -e 's/\\(\\\\x0[ad]\\)*$//') &&\nexec redis-server - <<EOF\nrequirepass \"$password\"\nEOF", false},
		{"password=$(od -An -v -tx1 /etc/hostname | tr -d ' \\n') &&\nexec redis-server - <<EOF\nrequirepass \"$password\"\nEOF", true},
		{"password=$(od -An /run/secrets/redis_password; echo hunter2) && exec redis-server - <<EOF\nrequirepass \"$password\"\nEOF", true},
	} {
		if bad := len(inlineCredentials(c.text)) > 0; bad != c.bad {
			t.Errorf("%q: inline credential %v, want %v", c.text, bad, c.bad)
		}
	}
}

// redisClients are the services that talk to the queue.
var redisClients = []string{"app", "worker"}

// redisAuth checks that svc authenticates to Redis with the secret.
func redisAuth(t *testing.T, svc types.ServiceConfig) {
	t.Helper()
	if got, _ := envValue(svc, "REDIS_PASSWORD_FILE"); got != "/run/secrets/redis_password" {
		t.Errorf("%s REDIS_PASSWORD_FILE: got %q, want /run/secrets/redis_password", svc.Name, got)
	}
	if _, ok := svc.Environment["REDIS_PASSWORD"]; ok {
		t.Errorf("%s REDIS_PASSWORD: got set, want only the _FILE form", svc.Name)
	}
	mounted := false
	for _, s := range svc.Secrets {
		mounted = mounted || s.Source == "redis_password"
	}
	if !mounted {
		t.Errorf("%s secrets: got %v, want redis_password mounted", svc.Name, svc.Secrets)
	}
}
