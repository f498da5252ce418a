package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/carteiro/carteiro/internal/nginxtemplate"
	"github.com/carteiro/carteiro/services/internal/testenv"
)

// TestNginxTemplatesRenderAsCompose renders nginx/ with the frontend's
// environment from docker-compose.yml (and with the observability overlay),
// through package nginxtemplate with the NGINX_ENVSUBST_* settings compose
// gives the official image, as a stand-in image's entrypoint
// (cmd/nginx-entrypoint) does: each template lands at its relative path
// without the suffix, every placeholder is filled with compose's value,
// nginx's own variables are untouched, and each file is byte for byte what
// gettext's envsubst gives with the official script's SHELL-FORMAT.
func TestNginxTemplatesRenderAsCompose(t *testing.T) {
	root := repoRoot(t)
	templates := map[string]string{} // relative output path → template
	err := filepath.WalkDir(filepath.Join(root, "nginx"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".template") {
			return err
		}
		rel, _ := filepath.Rel(filepath.Join(root, "nginx"), path)
		templates[strings.TrimSuffix(rel, ".template")] = path
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	placeholder := regexp.MustCompile(`\$\{[A-Z_][A-Z0-9_]*\}`)
	for label, p := range projects(t) {
		t.Run(label, func(t *testing.T) {
			fe := p.Services["frontend"]
			// The container's environment: compose's, plus what every
			// image has, which the filter must keep out.
			environ := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "HOSTNAME=frontend"}
			for _, k := range sortedKeys(fe.Environment) {
				v, _ := envValue(fe, k)
				environ = append(environ, k+"="+v)
			}
			getenv := func(k string) string { v, _ := envValue(fe, k); return v }
			o := nginxtemplate.OptionsFromEnv(getenv)
			if o.TemplateDir != "/etc/nginx/templates" || o.OutputDir != "/tmp" || o.Filter == "" {
				t.Fatalf("options from compose: got %+v, want templates /etc/nginx/templates, output /tmp, a filter", o)
			}
			// The mounts: ./nginx at the template folder (TestFrontendWiring).
			o.TemplateDir, o.OutputDir = filepath.Join(root, "nginx"), t.TempDir()
			files, err := nginxtemplate.Render(o, environ)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range files {
				rel, _ := filepath.Rel(o.OutputDir, f.Output)
				got = append(got, rel)
			}
			if w := sortedKeys(templates); !slices.Equal(got, w) {
				t.Errorf("rendered: got %v, want %v", got, w)
			}
			vars, err := nginxtemplate.Variables(environ, o.Filter)
			if err != nil {
				t.Fatal(err)
			}
			if _, leaked := vars["PATH"]; leaked {
				t.Errorf("NGINX_ENVSUBST_FILTER %q lets PATH through", o.Filter)
			}
			rendered := map[string]string{}
			for _, rel := range got {
				b, err := os.ReadFile(filepath.Join(o.OutputDir, rel))
				if err != nil {
					t.Fatal(err)
				}
				rendered[rel] = string(b)
				if left := placeholder.FindAllString(string(b), -1); len(left) > 0 {
					t.Errorf("%s: got %v left, want every placeholder rendered", rel, left)
				}
				tmpl, _ := os.ReadFile(templates[rel])
				if want := envsubst(t, string(tmpl), vars); string(b) != want {
					t.Errorf("%s: differs from envsubst's rendering", rel)
				}
			}
			upstream, _ := envValue(fe, "API_UPSTREAM")
			tracing, _ := envValue(fe, "NGINX_TRACING")
			for file, want := range map[string][]string{
				"nginx.conf": {"server " + upstream + ";", "pid /tmp/nginx.pid;", "include snippets/tracing-" + tracing + ".conf;",
					"access_log /dev/stdout json;", "map $http_host $api_host"},
				"conf.d/default.conf": {"listen 8080 default_server;", "root /usr/share/nginx/html;", "try_files $uri $uri/ =404;"},
			} {
				for _, w := range want {
					if !strings.Contains(rendered[file], w) {
						t.Errorf("%s: got no %q", file, w)
					}
				}
			}
		})
	}
}

// envsubst is gettext's envsubst on text, with the SHELL-FORMAT the
// official image's script builds from vars (the defined, filtered
// variables) and vars as the environment.
func envsubst(t *testing.T, text string, vars map[string]string) string {
	t.Helper()
	bin, err := exec.LookPath("envsubst")
	if err != nil {
		testenv.Missing(t, "envsubst (Debian gettext-base): %v", err)
	}
	var format, env []string
	for k, v := range vars {
		format = append(format, "${"+k+"}")
		env = append(env, k+"="+v)
	}
	sort.Strings(format)
	cmd := exec.Command(bin, strings.Join(format, " "))
	cmd.Env = env
	cmd.Stdin = strings.NewReader(text)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("envsubst: %v", err)
	}
	return string(out)
}
