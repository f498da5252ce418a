package config

import (
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// DB_HOST may list hosts for failover: the URL that Postgres.URL builds
// must reach pgx (pgconn.ParseConfig) as those hosts, in order, each on
// DB_PORT.
func TestPostgresURLHostsReachPgx(t *testing.T) {
	for _, c := range []struct {
		host, port string
		want       []string
	}{
		{"db", "", []string{"db:5432"}},
		{"::1", "6432", []string{"[::1]:6432"}},
		{"pg-a,pg-b", "", []string{"pg-a:5432", "pg-b:5432"}},
		{"pg-a.carteiro.internal,192.0.2.8,pg_c", "6432", []string{"pg-a.carteiro.internal:6432", "192.0.2.8:6432", "pg_c:6432"}},
	} {
		cfg, err := LoadAPI(env(map[string]string{"DB_HOST": c.host, "DB_PORT": c.port, "DB_SSLMODE": "disable"}))
		if err != nil {
			t.Fatalf("%q: %v", c.host, err)
		}
		pc, err := pgconn.ParseConfig(cfg.Postgres.URL())
		if err != nil {
			t.Fatalf("%q: ParseConfig: %v", c.host, err)
		}
		addr := func(host string, port uint16) string { return net.JoinHostPort(host, strconv.Itoa(int(port))) }
		got := []string{addr(pc.Host, pc.Port)}
		for _, f := range pc.Fallbacks {
			if a := addr(f.Host, f.Port); a != got[len(got)-1] { // sslmode=prefer would repeat each host
				got = append(got, a)
			}
		}
		if strings.Join(got, " ") != strings.Join(c.want, " ") {
			t.Errorf("%q: got %v, want %v", c.host, got, c.want)
		}
		// The description in logs names the same hosts and ports.
		if s, want := cfg.Postgres.String(), "@"+strings.Join(c.want, ",")+"/"; !strings.Contains(s, want) {
			t.Errorf("%q: String() got %s, want %q in it", c.host, s, want)
		}
	}
}
