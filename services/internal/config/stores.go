package config

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Postgres says how to reach the database that holds every message.
type Postgres struct {
	// Host is a host name or an IP address, or a comma-separated list of
	// host names and IPv4 addresses that pgx tries in order, each on Port.
	Host     string
	Port     int
	Name     string
	User     string
	Password string
	SSLMode  string
	// ConnectTimeout bounds one connection attempt.
	ConnectTimeout time.Duration
	// QueryTimeout bounds each statement a request makes, so an unreachable
	// database turns into a 503 instead of a hanging request.
	QueryTimeout time.Duration
	// MaxConns is the most connections the process keeps to Postgres
	// (pgxpool's MaxConns, whose own default, max(4, NumCPU), would cap
	// a 2-core api at 4 requests in the database at once). DB_MAX_CONNS
	// always sets it; 0, in a Postgres built by hand, keeps pgxpool's.
	MaxConns int
}

// URL returns the connection string in URL form.
func (p Postgres) URL() string {
	u := url.URL{
		Scheme: "postgres",
		Host:   p.netloc(),
		Path:   "/" + p.Name,
	}
	if p.Password != "" {
		u.User = url.UserPassword(p.User, p.Password)
	} else {
		u.User = url.User(p.User)
	}
	q := url.Values{}
	q.Set("sslmode", p.SSLMode)
	q.Set("connect_timeout", strconv.Itoa(max(1, int(p.ConnectTimeout/time.Second))))
	q.Set("application_name", "carteiro")
	u.RawQuery = q.Encode()
	return u.String()
}

// netloc is the URL's host:port, or for a list of hosts each with the
// port, "pg-a:5432,pg-b:5432": pgx (pgconn.ParseConfig, as libpq) pairs
// hosts and ports by position, so "pg-a,pg-b:5432" would leave pg-a on
// its default port.
func (p Postgres) netloc() string {
	port := strconv.Itoa(p.Port)
	hosts := strings.Split(p.Host, ",")
	for i, h := range hosts {
		hosts[i] = net.JoinHostPort(h, port)
	}
	return strings.Join(hosts, ",")
}

// String describes the database without its password, for logs.
func (p Postgres) String() string {
	return fmt.Sprintf("postgres://%s@%s/%s", p.User, p.netloc(), p.Name)
}

func readPostgres(r *reader) Postgres {
	return Postgres{
		Host:           r.hosts("DB_HOST", "127.0.0.1"),
		Port:           r.int("DB_PORT", 5432, 1, 65535),
		Name:           r.string("DB_NAME", "carteiro"),
		User:           r.string("DB_USER", "carteiro"),
		Password:       r.secret("DB_PASSWORD"),
		SSLMode:        r.oneOf("DB_SSLMODE", "prefer", "disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
		ConnectTimeout: r.duration("DB_CONNECT_TIMEOUT", 2*time.Second, time.Second),
		QueryTimeout:   r.duration("DB_QUERY_TIMEOUT", 1500*time.Millisecond, 10*time.Millisecond),
		MaxConns:       r.int("DB_MAX_CONNS", 16, 2, 1000),
	}
}

// Redis says how to reach the stream that carries messages to the workers.
type Redis struct {
	Addr     string
	Password string
	DB       int
	// Stream is the key of the Redis stream.
	Stream string
	// Group is the consumer group the workers share.
	Group string
}

func readRedis(r *reader) Redis {
	return Redis{
		Addr:     r.addr("REDIS_ADDR", "127.0.0.1:6379", 1),
		Password: r.secret("REDIS_PASSWORD"),
		DB:       r.int("REDIS_DB", 0, 0, 15),
		Stream:   r.string("REDIS_STREAM", "carteiro:emails"),
		Group:    r.string("REDIS_GROUP", "carteiro-workers"),
	}
}
