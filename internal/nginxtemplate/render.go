package nginxtemplate

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// The official image's defaults (20-envsubst-on-templates.sh).
const (
	DefaultTemplateDir = "/etc/nginx/templates"
	DefaultSuffix      = ".template"
	DefaultOutputDir   = "/etc/nginx/conf.d"
)

// Options say where templates are and where their output goes; the
// environment variables of the official image set them (OptionsFromEnv).
type Options struct {
	TemplateDir string // NGINX_ENVSUBST_TEMPLATE_DIR
	Suffix      string // NGINX_ENVSUBST_TEMPLATE_SUFFIX
	OutputDir   string // NGINX_ENVSUBST_OUTPUT_DIR
	// Filter is NGINX_ENVSUBST_FILTER: a regular expression a variable's
	// name must match to be substituted; "" lets every variable through.
	Filter string
}

// OptionsFromEnv reads the NGINX_ENVSUBST_* variables; an unset or empty
// one takes the official image's default.
func OptionsFromEnv(getenv func(string) string) Options {
	or := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	return Options{
		TemplateDir: or("NGINX_ENVSUBST_TEMPLATE_DIR", DefaultTemplateDir),
		Suffix:      or("NGINX_ENVSUBST_TEMPLATE_SUFFIX", DefaultSuffix),
		OutputDir:   or("NGINX_ENVSUBST_OUTPUT_DIR", DefaultOutputDir),
		Filter:      getenv("NGINX_ENVSUBST_FILTER"),
	}
}

// File is one rendered template.
type File struct {
	Template string // the template's path
	Output   string // the file written
}

// ErrOutputNotWritable is returned (wrapped) when the template folder
// exists but the output folder does not exist or is not writable: the
// official script logs this as an ERROR and renders nothing.
var ErrOutputNotWritable = errors.New("output folder is not writable")

// Render renders every template of o.TemplateDir into o.OutputDir with the
// variables of environ that o.Filter lets through (see the package doc) and
// returns the files written, in lexical order of the templates. A missing
// template folder renders nothing and returns no error. Rendering stops at
// the first file that cannot be read or written.
func Render(o Options, environ []string) ([]File, error) {
	vars, err := Variables(environ, o.Filter)
	if err != nil {
		return nil, err
	}
	if o.Suffix == "" {
		return nil, errors.New("NGINX_ENVSUBST_TEMPLATE_SUFFIX is empty")
	}
	if fi, err := os.Stat(o.TemplateDir); err != nil || !fi.IsDir() {
		return nil, nil
	}
	// test -w: exists, and writable for this process (access(2), so root
	// passes unless the file system is read-only).
	if err := syscall.Access(o.OutputDir, 2 /* W_OK */); err != nil {
		return nil, fmt.Errorf("%s exists, but %s is not writable: %w (%v)", o.TemplateDir, o.OutputDir, ErrOutputNotWritable, err)
	}
	templates, err := findTemplates(o.TemplateDir, o.Suffix)
	if err != nil {
		return nil, err
	}
	var done []File
	for _, rel := range templates {
		f := File{
			Template: filepath.Join(o.TemplateDir, rel),
			Output:   filepath.Join(o.OutputDir, strings.TrimSuffix(rel, o.Suffix)),
		}
		text, err := os.ReadFile(f.Template)
		if err != nil {
			return done, err
		}
		if err := os.MkdirAll(filepath.Dir(f.Output), 0o777); err != nil {
			return done, err
		}
		// Created like a shell's `>`: mode 0666 less the umask, an
		// existing file truncated.
		if err := os.WriteFile(f.Output, []byte(Expand(string(text), vars)), 0o666); err != nil {
			return done, err
		}
		done = append(done, f)
	}
	return done, nil
}

// findTemplates lists the regular files under dir whose names end in
// suffix, as paths relative to dir, sorted. Symbolic links are followed
// (find -follow); a folder reached twice through links is walked once.
func findTemplates(dir, suffix string) ([]string, error) {
	var out []string
	seen := map[[2]uint64]bool{}
	var walk func(rel string) error
	walk = func(rel string) error {
		path := filepath.Join(dir, rel)
		fi, err := os.Stat(path) // follows links
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			key := [2]uint64{uint64(st.Dev), st.Ino}
			if seen[key] {
				return nil
			}
			seen[key] = true
		}
		entries, err := os.ReadDir(path)
		if err != nil {
			return err
		}
		for _, e := range entries {
			child := filepath.Join(rel, e.Name())
			fi, err := os.Stat(filepath.Join(dir, child))
			if err != nil {
				if e.Type()&os.ModeSymlink != 0 {
					continue // a dangling link: find -follow skips it too
				}
				return err
			}
			switch {
			case fi.IsDir():
				if err := walk(child); err != nil {
					return err
				}
			case fi.Mode().IsRegular() && strings.HasSuffix(e.Name(), suffix) && e.Name() != suffix:
				out = append(out, child)
			}
		}
		return nil
	}
	if err := walk("."); err != nil {
		return nil, err
	}
	sort.Strings(out)
	return out, nil
}
