package devstack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/carteiro/carteiro/internal/nginxtemplate"
)

// NginxConfig is the native nginx: nginx/*.template rendered by package
// nginxtemplate, under the official image's rules, with native values, and
// how to run it.
type NginxConfig struct {
	Bin         string // the nginx program
	TemplateDir string // Root/nginx
	// Dir holds the rendered tree (nginx.conf, conf.d/, snippets/), the pid
	// file, the temporary folders and, by default, the logs: Dir/nginx.
	Dir string
	// Vars are the placeholders' values (nginx/README.md). API_UPSTREAM
	// lists every api instance as "a; server b; server c", so the
	// template's one `server ${API_UPSTREAM};` line renders a `server`
	// directive per instance, where compose gives a single "app:8080".
	Vars map[string]string
	// User is the `user` directive's value when nginx starts as root, given
	// on the command line (-g) so the rendered tree stays exactly the
	// templates' rendering; "" otherwise.
	User string
}

// nginxValueRe matches what may not appear in a value pasted into an
// nginx directive: quotes, semicolons, braces, backslashes and dollars.
var nginxValueRe = regexp.MustCompile(`[;{}"'\\$]`)

// statusAllowRe is one `allow` argument: an address or a CIDR, or all.
var statusAllowRe = regexp.MustCompile(`^(all|[0-9A-Fa-f.:/]+)$`)

// NginxConfig returns the native nginx of c, with every value checked:
// nothing nginx would misread, WEB_ROOT has an index.html, relative log
// paths made absolute.
func (c Config) NginxConfig() (NginxConfig, error) {
	dir := filepath.Join(c.Dir, "nginx")
	upstreams := make([]string, len(c.APIHTTPAddrs))
	for i, a := range c.APIHTTPAddrs {
		upstreams[i] = DialAddr(a)
	}
	logTarget := func(v string) string {
		if v == "stderr" || v == "off" || strings.HasPrefix(v, "syslog:") || filepath.IsAbs(v) {
			return v
		}
		a, _ := filepath.Abs(v)
		return a
	}
	n := NginxConfig{
		Bin:         c.Nginx.Bin,
		TemplateDir: filepath.Join(c.Root, "nginx"),
		Dir:         dir,
		Vars: map[string]string{
			"API_UPSTREAM":        strings.Join(upstreams, "; server "),
			"NGINX_LISTEN":        c.NginxListen,
			"WEB_ROOT":            c.Nginx.WebRoot,
			"NGINX_RUN_DIR":       dir,
			"NGINX_ACCESS_LOG":    logTarget(c.Nginx.AccessLog),
			"NGINX_ERROR_LOG":     logTarget(c.Nginx.ErrorLog),
			"API_RATE_LIMIT":      c.Nginx.RateLimit,
			"NGINX_STATUS_LISTEN": c.NginxStatusAddr,
			"NGINX_STATUS_ALLOW":  c.Nginx.StatusAllow,
			"NGINX_TRACING":       c.Nginx.Tracing,
		},
	}
	var errs []error
	for _, k := range sortedKeys(n.Vars) {
		v := n.Vars[k]
		spaces := k == "NGINX_LISTEN" || k == "NGINX_STATUS_LISTEN" || k == "API_UPSTREAM"
		switch {
		case v == "":
			errs = append(errs, fmt.Errorf("nginx %s is empty", k))
		case k != "API_UPSTREAM" && nginxValueRe.MatchString(v):
			errs = append(errs, fmt.Errorf("nginx %s contains a character nginx would misread: %q", k, v))
		case strings.ContainsAny(v, "\n\r") || !spaces && strings.ContainsAny(v, " \t"):
			errs = append(errs, fmt.Errorf("nginx %s must not contain whitespace: %q", k, v))
		}
	}
	for _, u := range upstreams {
		if nginxValueRe.MatchString(u) || strings.ContainsAny(u, " \t\n") {
			errs = append(errs, fmt.Errorf("API_HTTP_ADDR: %q is not an address nginx can use", u))
		}
	}
	if !statusAllowRe.MatchString(c.Nginx.StatusAllow) {
		errs = append(errs, fmt.Errorf("NGINX_STATUS_ALLOW: got %q, want an address, a CIDR or all", c.Nginx.StatusAllow))
	}
	if _, err := os.Stat(filepath.Join(c.Nginx.WebRoot, "index.html")); err != nil {
		errs = append(errs, fmt.Errorf("WEB_ROOT has no index.html: %w", err))
	}
	if os.Geteuid() == 0 {
		n.User = c.Nginx.User
		if n.User == "" {
			n.User = "nobody"
			if !othersCanRead(filepath.Join(c.Nginx.WebRoot, "index.html")) || !othersCanRead(dir) {
				n.User = "root"
			}
		}
		if nginxValueRe.MatchString(n.User) || strings.ContainsAny(n.User, " \t\n") {
			errs = append(errs, fmt.Errorf("NGINX_USER: got %q, want a user name", n.User))
		}
		// Debian has no group "nobody", which nginx would assume.
		if n.User == "nobody" {
			if _, err := user.LookupGroup("nobody"); err != nil {
				if _, err := user.LookupGroup("nogroup"); err == nil {
					n.User = "nobody nogroup"
				}
			}
		}
	}
	return n, errors.Join(errs...)
}

// othersCanRead reports whether a user outside the file's owner and group
// can reach path: every folder on the way searchable by others, the file
// (or folder) readable by them. Root passes every check, so nginx's
// workers would not; group membership and ACLs are not considered, which
// errs on the safe side. A path that does not exist yet is judged by its
// nearest existing parent.
func othersCanRead(path string) bool {
	p := path
	for {
		fi, err := os.Stat(p)
		if err == nil {
			need := os.FileMode(0o004)
			if fi.IsDir() {
				need = 0o005
			}
			if p != path && fi.IsDir() {
				need = 0o001
			}
			if fi.Mode().Perm()&need != need {
				return false
			}
		} else if !os.IsNotExist(err) {
			return false
		}
		parent := filepath.Dir(p)
		if parent == p {
			return true
		}
		p = parent
	}
}

// Render writes the rendered tree into n.Dir, replacing whatever an
// earlier rendering left there (a conf.d file whose template is gone would
// still be included), and creates the folders nginx writes to. A ${NAME}
// left in the output is an error: a template uses a placeholder the native
// stack does not provide.
func (n NginxConfig) Render() error {
	if err := os.MkdirAll(n.Dir, 0o755); err != nil {
		return err
	}
	// Each top-level entry a template produces is removed first.
	entries, err := os.ReadDir(n.TemplateDir)
	if err != nil {
		return fmt.Errorf("nginx templates: %w", err)
	}
	for _, e := range entries {
		os.RemoveAll(filepath.Join(n.Dir, strings.TrimSuffix(e.Name(), nginxtemplate.DefaultSuffix)))
	}
	names := sortedKeys(n.Vars)
	environ := make([]string, 0, len(names))
	for _, k := range names {
		environ = append(environ, k+"="+n.Vars[k])
	}
	files, err := nginxtemplate.Render(nginxtemplate.Options{
		TemplateDir: n.TemplateDir, Suffix: nginxtemplate.DefaultSuffix, OutputDir: n.Dir,
		Filter: "^(" + strings.Join(names, "|") + ")$",
	}, environ)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("no templates in %s", n.TemplateDir)
	}
	for _, f := range files {
		b, err := os.ReadFile(f.Output)
		if err != nil {
			return err
		}
		if left := placeholderRe.FindAllString(string(b), -1); len(left) > 0 {
			return fmt.Errorf("%s: placeholders %v are not provided natively (only %v)", f.Template, left, names)
		}
	}
	for _, log := range []string{n.Vars["NGINX_ACCESS_LOG"], n.Vars["NGINX_ERROR_LOG"]} {
		if filepath.IsAbs(log) && !strings.HasPrefix(log, "/dev/") {
			if err := os.MkdirAll(filepath.Dir(log), 0o755); err != nil {
				return err
			}
		}
	}
	return nil
}

// Args are nginx's arguments to run the rendered tree in the foreground:
// paths relative to n.Dir, its own error log there until the configuration
// is read.
func (n NginxConfig) Args() []string {
	global := "daemon off;"
	if n.User != "" {
		global = "user " + n.User + "; " + global
	}
	return []string{"-e", filepath.Join(n.Dir, "error.log"), "-p", n.Dir + "/", "-c", filepath.Join(n.Dir, "nginx.conf"), "-g", global}
}

// Test runs `nginx -t` on the rendered tree.
func (n NginxConfig) Test(ctx context.Context) error {
	if n.Bin == "" {
		return errors.New("nginx not found (install it, or set NGINX_BIN)")
	}
	out, err := exec.CommandContext(ctx, n.Bin, append([]string{"-t", "-q"}, n.Args()...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("nginx rejected the configuration rendered in %s: %v\n%s", n.Dir, err, out)
	}
	return nil
}

// placeholderRe is a ${NAME} placeholder of this repository's templates.
var placeholderRe = regexp.MustCompile(`\$\{[A-Z_][A-Z0-9_]*\}`)

// Settings are the values the templates are rendered with, "NAME=value"
// sorted by name (Component.Settings).
func (n NginxConfig) Settings() []string {
	out := make([]string, 0, len(n.Vars))
	for _, k := range sortedKeys(n.Vars) {
		out = append(out, k+"="+n.Vars[k])
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
