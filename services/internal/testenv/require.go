package testenv

import (
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/carteiro/carteiro/internal/devstack"
)

// CI reports whether the tests run in CI, where nothing may be skipped.
func CI() bool {
	v, _ := strconv.ParseBool(os.Getenv("CI"))
	return v
}

// Missing stops t because a dependency is not there: a failure in CI, a
// skip elsewhere.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if CI() {
		t.Fatalf("missing test dependency (CI must provide it): "+format, args...)
	}
	t.Skipf("missing test dependency: "+format, args...)
}

// FreePort returns a loopback TCP port nobody listens on right now, below
// the kernel's ephemeral range (devstack.ListenFree), so no outgoing
// connection takes it as its source port before the server binds it.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := devstack.ListenFree()
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Ports hands out distinct free loopback ports: each stays bound until
// Release, so two calls can never return the same port (as two FreePort
// calls can, once the first port is free again).
type Ports struct {
	t         testing.TB
	listeners []net.Listener
}

// NewPorts returns an empty set; Release is also called when t ends.
func NewPorts(t testing.TB) *Ports {
	p := &Ports{t: t}
	t.Cleanup(p.Release)
	return p
}

// Addr reserves a port and returns its 127.0.0.1:port address.
func (p *Ports) Addr() string {
	p.t.Helper()
	ln, err := devstack.ListenFree()
	if err != nil {
		p.t.Fatalf("free port: %v", err)
	}
	p.listeners = append(p.listeners, ln)
	return ln.Addr().String()
}

// Release frees every reserved port, for the processes that will bind them.
func (p *Ports) Release() {
	for _, ln := range p.listeners {
		ln.Close()
	}
	p.listeners = nil
}

// Logger returns a logger that writes into the test's output.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Env returns a getenv function that answers from vars, and from the
// process environment for anything vars does not name.
func Env(vars map[string]string) func(string) string {
	return func(k string) string {
		if v, ok := vars[k]; ok {
			return v
		}
		return os.Getenv(k)
	}
}

// LogBuffer keeps what is written to it, and writes it to a test's output
// too, for tests that read a process's log.
type LogBuffer struct {
	t  testing.TB
	mu sync.Mutex
	b  strings.Builder
}

// NewLogBuffer returns an empty buffer for t.
func NewLogBuffer(t testing.TB) *LogBuffer { return &LogBuffer{t: t} }

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.b.Write(p)
	l.mu.Unlock()
	return l.t.Output().Write(p)
}

// String is everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Count is how many lines written so far contain s.
func (l *LogBuffer) Count(s string) int {
	n := 0
	for _, line := range strings.Split(l.String(), "\n") {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}
