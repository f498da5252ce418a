package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/carteiro/carteiro/internal/secretfile"
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
	if !r.inRange(name, n, min, max) {
		return def
	}
	return n
}

func (r *reader) inRange(name string, n, min, max int) bool {
	if n < min || n > max {
		r.fail(name, "%d is outside %d..%d", n, min, max)
		return false
	}
	return true
}

// host reads a host to connect to: an IP address or a host name (letters,
// digits, hyphens and dots, RFC 1123 §2.1, and the underscores container
// engines allow in service names). A port, a scheme or a path is an error:
// the port has a variable of its own.
func (r *reader) host(name, def string) string {
	v := r.string(name, def)
	if err := checkHost(v); err != nil {
		r.fail(name, "%q %v", v, err)
		return def
	}
	return v
}

// addr reads a host:port address in net.SplitHostPort's shape (an IPv6
// host in brackets; an empty host, for a listener, is every interface)
// with a numeric port in minPort..65535: 0 for a listener asks the kernel
// for a free port.
func (r *reader) addr(name, def string, minPort int) string {
	v := r.string(name, def)
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		r.fail(name, "%q is not host:port", v)
		return def
	}
	if host != "" {
		if err := checkHost(host); err != nil {
			r.fail(name, "%q: host %q %v", v, host, err)
			return def
		}
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		r.fail(name, "%q: port %q is not a number", v, port)
		return def
	}
	if !r.inRange(name, n, minPort, 65535) {
		return def
	}
	return v
}

// hosts reads what host reads, or a comma-separated list of host names and
// IPv4 addresses ("pg-a,pg-b"): pgx's multi-host form (pgconn.ParseConfig,
// after libpq's §34.1.1.3 "Specifying Multiple Hosts"), tried in order with
// one shared port. An IPv6 address in a list is an error: the URL would
// need it in brackets, and url.Parse refuses a list that starts with one.
func (r *reader) hosts(name, def string) string {
	v := r.string(name, def)
	if !strings.Contains(v, ",") {
		if err := checkHost(v); err != nil {
			r.fail(name, "%q %v", v, err)
			return def
		}
		return v
	}
	for _, h := range strings.Split(v, ",") {
		if h == "" {
			r.fail(name, "%q has an empty host in its list", v)
			return def
		}
		if err := checkHost(h); err != nil {
			r.fail(name, "%q: host %q %v", v, h, err)
			return def
		}
		if strings.Contains(h, ":") {
			r.fail(name, "%q: host %q is an IPv6 address, which a list of hosts cannot hold (use a host name)", v, h)
			return def
		}
	}
	return v
}

// checkHost reports why v is not a host; v is not empty.
func checkHost(v string) error {
	if _, err := netip.ParseAddr(v); err == nil {
		return nil
	}
	for _, c := range v {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_') {
			return fmt.Errorf("is not a host name or an IP address (%q is neither a letter, a digit, '-', '.' nor '_')", c)
		}
	}
	return nil
}

// linkURL reads an absolute http or https URL with a host, or an absolute
// path ("/jaeger", for a UI served on the page's own origin), which a
// browser resolves against the page (RFC 3986 §4.2, a path-absolute
// reference); empty leaves def. A network-path reference ("//host") is an
// error: it names a host without a scheme.
func (r *reader) linkURL(name, def string) string {
	v := r.string(name, def)
	if v == "" {
		return v
	}
	u, err := url.Parse(v)
	isPath := err == nil && u.Scheme == "" && u.Host == "" && strings.HasPrefix(v, "/") && !strings.HasPrefix(v, "//") && !strings.ContainsAny(v, " \t")
	if !isPath && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "") {
		r.fail(name, "%q is neither an http:// or https:// URL with a host nor an absolute path", v)
		return def
	}
	return v
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
// convention of compose secrets). The file wins and its trailing CRs and
// newlines are dropped. A file left empty by that (a secret created from
// an empty value, or never filled in) is an error naming NAME_FILE, not
// "no password": a service pointed at a secret file that holds none is
// misconfigured, and for Redis it would mean talking to a server without
// requirepass, or failing later with NOAUTH.
func (r *reader) secret(name string) string {
	path := strings.TrimSpace(r.getenv(name + "_FILE"))
	if path == "" {
		return r.getenv(name)
	}
	v, err := secretfile.Read(path)
	if err != nil {
		r.fail(name+"_FILE", "%v", err)
	}
	return v
}
