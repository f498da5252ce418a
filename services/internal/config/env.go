package config

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// reader looks variables up through getenv and collects one error per bad
// variable, so a misconfigured deployment learns about all of them at once.
type reader struct {
	getenv func(string) string
	errs   []error
}

func (r *reader) fail(name, format string, args ...any) {
	r.errs = append(r.errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
}

func (r *reader) err() error { return errors.Join(r.errs...) }

func (r *reader) string(name, def string) string {
	if v := strings.TrimSpace(r.getenv(name)); v != "" {
		return v
	}
	return def
}

func (r *reader) int(name string, def, min, max int) int {
	v := strings.TrimSpace(r.getenv(name))
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		r.fail(name, "%q is not a whole number", v)
		return def
	}
	if n < min || n > max {
		r.fail(name, "%d is outside %d..%d", n, min, max)
		return def
	}
	return n
}

func (r *reader) bool(name string, def bool) bool {
	v := strings.TrimSpace(r.getenv(name))
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.fail(name, "%q is not true or false", v)
		return def
	}
	return b
}

func (r *reader) duration(name string, def, min time.Duration) time.Duration {
	v := strings.TrimSpace(r.getenv(name))
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		r.fail(name, "%q is not a duration such as 500ms or 2s", v)
		return def
	}
	if d < min {
		r.fail(name, "%s is shorter than %s", d, min)
		return def
	}
	return d
}

func (r *reader) oneOf(name, def string, allowed ...string) string {
	v := r.string(name, def)
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	r.fail(name, "%q is not one of %s", v, strings.Join(allowed, ", "))
	return def
}

// secret reads NAME, or the file named by NAME_FILE when that is set (the
// convention of compose secrets). The file wins and its trailing newline is
// dropped.
func (r *reader) secret(name string) string {
	path := strings.TrimSpace(r.getenv(name + "_FILE"))
	if path == "" {
		return r.getenv(name)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		r.fail(name+"_FILE", "%v", err)
		return ""
	}
	return strings.TrimRight(string(b), "\r\n")
}
