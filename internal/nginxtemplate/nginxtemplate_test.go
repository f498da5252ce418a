package nginxtemplate

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

var testVars = map[string]string{"A": "v", "AB": "w", "E": "", "_U1": "u", "P": "a$b ${A}"}

var expandCases = []struct{ in, want string }{
	{"$A", "v"},
	{"${A}", "v"},
	{"x$A$A-y", "xvv-y"},
	{"${A}B", "vB"},
	{"$AB", "w"},                 // the longest name
	{"$ABC", "$ABC"},             // ABC is not defined
	{"${ABC}", "${ABC}"},         // neither here
	{"$E|${E}|", "||"},           // defined but empty
	{"$_U1.", "u."},              // underscore and digits
	{"$P", "a$b ${A}"},           // values are not expanded again
	{"${A:-d}", "${A:-d}"},       // no shell expansions
	{"${A", "${A"},               // no closing brace
	{"${ A}", "${ A}"},           // not a name
	{"${}", "${}"},               // empty name
	{"$", "$"},                   // a lone dollar
	{"$$A", "$v"},                // no escape: the second $ starts the reference
	{"$1 ${1} $-", "$1 ${1} $-"}, // names start with a letter or _
	{"$remote_addr", "$remote_addr"},
	{"é$A ü", "év ü"},
	{"", ""},
	{"no references", "no references"},
	{"trailing $A\n", "trailing v\n"},
}

func TestExpand(t *testing.T) {
	for _, c := range expandCases {
		if got := Expand(c.in, testVars); got != c.want {
			t.Errorf("Expand(%q): got %q, want %q", c.in, got, c.want)
		}
	}
}

// envsubst runs gettext's envsubst on text with the SHELL-FORMAT the
// official script builds (every name of vars), vars as its environment.
// Outside CI a missing envsubst skips the test.
func envsubst(t *testing.T, text string, vars map[string]string) string {
	t.Helper()
	bin, err := exec.LookPath("envsubst")
	if err != nil {
		if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
			t.Fatalf("envsubst (Debian gettext-base, scripts/ci-deps.sh installs it): %v", err)
		}
		t.Skipf("envsubst is missing (apt-get install gettext-base): %v", err)
	}
	var format []string
	env := []string{"PATH=" + os.Getenv("PATH")}
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

// TestExpandMatchesEnvsubst: the same inputs through the real envsubst give
// the same output, so the table above is gettext's behaviour, not ours.
func TestExpandMatchesEnvsubst(t *testing.T) {
	for _, c := range expandCases {
		if got := envsubst(t, c.in, testVars); got != c.want {
			t.Errorf("envsubst on %q: got %q, the table wants %q", c.in, got, c.want)
		}
	}
}

func TestVariables(t *testing.T) {
	environ := []string{"A=1", "AB=2", "XA=3", "B=", "A=dup", "NOEQUALS", "=x", "lower=4"}
	for _, c := range []struct {
		filter string
		want   []string
	}{
		{"", []string{"A=1", "AB=2", "B=", "XA=3", "lower=4"}},
		{"^(A|B)", []string{"A=1", "AB=2", "B="}}, // unanchored at the end, as awk's ~
		{"^(A|B)$", []string{"A=1", "B="}},
		{"A", []string{"A=1", "AB=2", "XA=3"}},
		{"^[a-z]", []string{"lower=4"}},
		{"^NOTHING$", nil},
	} {
		vars, err := Variables(environ, c.filter)
		if err != nil {
			t.Fatalf("filter %q: %v", c.filter, err)
		}
		var got []string
		for k, v := range vars {
			got = append(got, k+"="+v)
		}
		sort.Strings(got)
		if !slices.Equal(got, c.want) {
			t.Errorf("filter %q: got %v, want %v", c.filter, got, c.want)
		}
	}
	if _, err := Variables(environ, "^(A"); err == nil || !strings.Contains(err.Error(), "NGINX_ENVSUBST_FILTER") {
		t.Errorf("filter ^(A: got error %v, want one naming NGINX_ENVSUBST_FILTER", err)
	}
}

// testEnviron is the environment of the rendering tests: HIDDEN and PATH
// are defined but filtered out by testFilter.
var testEnviron = []string{"LISTEN=8080", "RUN_DIR=/run/x", "EMPTY=", "UPSTREAM=a:1; server b:2", "HIDDEN=h", "PATH=/bin"}

const testFilter = "^(LISTEN|RUN_DIR|EMPTY|UPSTREAM)$"

// tree reads every file under dir: relative path → content.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		rel, _ := filepath.Rel(dir, path)
		out[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRender(t *testing.T) {
	out := t.TempDir()
	files, err := Render(Options{TemplateDir: "testdata/templates", Suffix: ".template", OutputDir: out, Filter: testFilter}, testEnviron)
	if err != nil {
		t.Fatal(err)
	}
	var outputs []string
	for _, f := range files {
		rel, _ := filepath.Rel(out, f.Output)
		outputs = append(outputs, rel)
		if !strings.HasPrefix(f.Template, "testdata/templates/") || !strings.HasSuffix(f.Template, ".template") {
			t.Errorf("template path %q: want testdata/templates/….template", f.Template)
		}
	}
	want := map[string]string{
		"nginx.conf": "# main: 8080 and 8080, ${UNDEFINED}, $HIDDEN, ${LISTEN:-80}, $remote_addr\npid /run/x/nginx.pid;\n",
		// Subfolders are kept, and created.
		"conf.d/site.conf":       "server { listen 8080; root /run/x/www; set $x \"\"; }\n",
		"conf.d/deep/inner.conf": "upstream api { server a:1; server b:2; }\n",
	}
	if g, w := outputs, []string{"conf.d/deep/inner.conf", "conf.d/site.conf", "nginx.conf"}; !slices.Equal(g, w) {
		t.Errorf("rendered files: got %v, want %v", g, w)
	}
	got := tree(t, out)
	if len(got) != len(want) {
		t.Errorf("output tree: got %d files %v, want %d (no notes.txt, no .tmpl)", len(got), keys(got), len(want))
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s: got %q, want %q", name, got[name], w)
		}
	}

	// The same, through gettext's envsubst with the script's SHELL-FORMAT.
	vars, _ := Variables(testEnviron, testFilter)
	for name := range want {
		tmpl, err := os.ReadFile(filepath.Join("testdata/templates", name+".template"))
		if err != nil {
			t.Fatal(err)
		}
		if e := envsubst(t, string(tmpl), vars); got[name] != e {
			t.Errorf("%s: got %q, envsubst gives %q", name, got[name], e)
		}
	}
}

func TestRenderSuffix(t *testing.T) {
	out := t.TempDir()
	if _, err := Render(Options{TemplateDir: "testdata/templates", Suffix: ".tmpl", OutputDir: out}, testEnviron); err != nil {
		t.Fatal(err)
	}
	got := tree(t, out)
	if w := map[string]string{"snippets/headers.conf": "add_header X-Listen \"8080\";\n"}; len(got) != 1 || got["snippets/headers.conf"] != w["snippets/headers.conf"] {
		t.Errorf("suffix .tmpl: got %v, want %v", got, w)
	}
}

// TestRenderEmptyFilter: no filter substitutes every defined variable.
func TestRenderEmptyFilter(t *testing.T) {
	out := t.TempDir()
	if _, err := Render(Options{TemplateDir: "testdata/templates", Suffix: ".template", OutputDir: out}, testEnviron); err != nil {
		t.Fatal(err)
	}
	if got, w := tree(t, out)["nginx.conf"], "# main: 8080 and 8080, ${UNDEFINED}, h, ${LISTEN:-80}, $remote_addr\n"; !strings.HasPrefix(got, w) {
		t.Errorf("nginx.conf without a filter: got %q, want it to start with %q", got, w)
	}
}

func TestRenderFolders(t *testing.T) {
	t.Run("template folder missing: nothing, no error", func(t *testing.T) {
		files, err := Render(Options{TemplateDir: filepath.Join(t.TempDir(), "none"), Suffix: ".template", OutputDir: t.TempDir()}, nil)
		if err != nil || len(files) != 0 {
			t.Errorf("got %v, %v; want no files and no error", files, err)
		}
	})
	t.Run("output folder missing: an error, nothing written", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "missing")
		files, err := Render(Options{TemplateDir: "testdata/templates", Suffix: ".template", OutputDir: out}, nil)
		if !errors.Is(err, ErrOutputNotWritable) || len(files) != 0 {
			t.Errorf("got %v, %v; want ErrOutputNotWritable", files, err)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Errorf("output folder: got %v, want it still missing", err)
		}
	})
	t.Run("symbolic links followed", func(t *testing.T) {
		abs, _ := filepath.Abs("testdata/templates")
		dir := t.TempDir()
		if err := os.Symlink(abs, filepath.Join(dir, "linked")); err != nil {
			t.Fatal(err)
		}
		out := t.TempDir()
		if _, err := Render(Options{TemplateDir: dir, Suffix: ".template", OutputDir: out, Filter: testFilter}, testEnviron); err != nil {
			t.Fatal(err)
		}
		if got := keys(tree(t, out)); !slices.Equal(got, []string{"linked/conf.d/deep/inner.conf", "linked/conf.d/site.conf", "linked/nginx.conf"}) {
			t.Errorf("through a link: got %v", got)
		}
	})
}

func TestOptionsFromEnv(t *testing.T) {
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	if got, want := OptionsFromEnv(getenv), (Options{DefaultTemplateDir, DefaultSuffix, DefaultOutputDir, ""}); got != want {
		t.Errorf("defaults: got %+v, want %+v", got, want)
	}
	env = map[string]string{"NGINX_ENVSUBST_TEMPLATE_DIR": "/t", "NGINX_ENVSUBST_TEMPLATE_SUFFIX": ".tpl",
		"NGINX_ENVSUBST_OUTPUT_DIR": "/tmp", "NGINX_ENVSUBST_FILTER": "^X"}
	if got, want := OptionsFromEnv(getenv), (Options{"/t", ".tpl", "/tmp", "^X"}); got != want {
		t.Errorf("set: got %+v, want %+v", got, want)
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
