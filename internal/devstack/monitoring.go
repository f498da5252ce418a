package devstack

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/carteiro/carteiro/internal/nginxtemplate"
	"github.com/carteiro/carteiro/internal/secretfile"
)

// DevOnlyExporterPassword is the password the stack gives the exporters'
// logins (the Postgres role POSTGRES_EXPORTER_USER, the Redis ACL user
// REDIS_EXPORTER_USER) unless their *_PASSWORD or *_PASSWORD_FILE say
// otherwise. DEVELOPMENT ONLY, like DevOnlyDBPassword: it is in the
// repository. Compose generates its own (make secrets).
const DevOnlyExporterPassword = "carteiro-exporter-dev-only-NOT-A-SECRET"

// AlertmanagerSettings are Alertmanager's (OBS=1): it mails the alerts
// Prometheus fires, routed by severity
// (observability/alertmanager/alertmanager.native.yml.template).
type AlertmanagerSettings struct {
	// Bin is ALERTMANAGER_BIN (prometheus-alertmanager, Debian's name, or
	// alertmanager); empty when none is found, and then it is skipped
	// with a warning.
	Bin      string
	Listen   string // ALERTMANAGER_LISTEN 127.0.0.1:9093: API and UI
	Template string // ALERTMANAGER_TEMPLATE (observability/alertmanager/alertmanager.native.yml.template)
	// SMTPAddr is ALERTMANAGER_SMTP_ADDR, the server alerts are mailed
	// through: default MAILPIT_SMTP_ADDR (Mailpit, or with SKIP_MAILPIT
	// your own server there), never the workers' SMTP_HOST/SMTP_PORT.
	SMTPAddr string
	From, To string // ALERTS_FROM alertmanager@carteiro.localhost, ALERTS_TO alertas@carteiro.localhost
	Skip     bool   // SKIP_ALERTMANAGER
}

// PostgresExporterSettings are postgres_exporter's (OBS=1).
type PostgresExporterSettings struct {
	// Bin is POSTGRES_EXPORTER_BIN (prometheus-postgres-exporter, Debian's
	// name, or postgres_exporter); empty when none is found, and then it
	// is skipped with a warning.
	Bin    string
	Listen string // POSTGRES_EXPORTER_LISTEN 127.0.0.1:9187
	// User is POSTGRES_EXPORTER_USER (carteiro_monitor): a login role
	// granted pg_monitor and nothing else. Password is
	// POSTGRES_EXPORTER_PASSWORD (DevOnlyExporterPassword); PasswordFile,
	// POSTGRES_EXPORTER_PASSWORD_FILE, wins when set.
	User, Password, PasswordFile string
	// SSLMode is POSTGRES_EXPORTER_SSLMODE: DB_SSLMODE when the exporter's
	// driver (lib/pq) knows it (disable, require, verify-ca, verify-full),
	// else disable (lib/pq has no prefer or allow).
	SSLMode string
	Queries string // POSTGRES_EXPORTER_QUERIES (observability/postgres-exporter/queries.yaml)
	Skip    bool   // SKIP_POSTGRES_EXPORTER
}

// RedisExporterSettings are redis_exporter's (OBS=1).
type RedisExporterSettings struct {
	// Bin is REDIS_EXPORTER_BIN (prometheus-redis-exporter, Debian's name,
	// or redis_exporter); empty when none is found, and then it is
	// skipped with a warning.
	Bin    string
	Listen string // REDIS_EXPORTER_LISTEN 127.0.0.1:9121
	// User is REDIS_EXPORTER_USER (carteiro-exporter): an ACL user allowed
	// the commands in RedisExporterACL only. Password and PasswordFile:
	// REDIS_EXPORTER_PASSWORD (DevOnlyExporterPassword) and
	// REDIS_EXPORTER_PASSWORD_FILE, which wins when set.
	User, Password, PasswordFile string
	// Stream is REDIS_STREAM (carteiro:emails) in database REDIS_DB (0):
	// the stream whose length and consumer groups it exports.
	Stream string
	DB     int
	Skip   bool // SKIP_REDIS_EXPORTER
}

// RedisExporterACL are the ACL rules (Redis 7, ACL SETUSER) of the
// exporter's user, after `on` and its password: read access to the stream
// key alone, and only the commands redis_exporter runs for carteiro's
// flags (--check-single-streams, --config-command=-,
// --set-client-name=false): INFO, LATENCY LATEST and HISTOGRAM, SLOWLOG
// LEN and GET, SELECT, XINFO STREAM, GROUPS and CONSUMERS. No CONFIG GET:
// it would read requirepass. Compose's queue service defines the same
// user with the same rules (checked by services/internal/deploy).
func RedisExporterACL(stream string) []string {
	return []string{"resetkeys", "%R~" + stream, "resetchannels", "-@all",
		"+info", "+latency|latest", "+latency|histogram", "+slowlog|len", "+slowlog|get",
		"+select", "+xinfo|stream", "+xinfo|groups", "+xinfo|consumers"}
}

// loadMonitoring reads the settings of Alertmanager and the exporters.
func loadMonitoring(e *env, c *Config, path string) {
	c.Alertmanager = AlertmanagerSettings{
		Bin:      e.get("ALERTMANAGER_BIN", findProgram(path, "prometheus-alertmanager", "alertmanager")),
		Listen:   e.addr("ALERTMANAGER_LISTEN", "127.0.0.1:9093", false),
		Template: e.get("ALERTMANAGER_TEMPLATE", filepath.Join(c.Root, "observability", "alertmanager", "alertmanager.native.yml.template")),
		SMTPAddr: e.addr("ALERTMANAGER_SMTP_ADDR", c.MailpitSMTPAddr, false),
		From:     e.get("ALERTS_FROM", "alertmanager@carteiro.localhost"),
		To:       e.get("ALERTS_TO", "alertas@carteiro.localhost"),
		Skip:     e.bool("SKIP_ALERTMANAGER"),
	}
	sslmode := e.get("DB_SSLMODE", "disable")
	switch sslmode {
	case "disable", "require", "verify-ca", "verify-full":
	default:
		sslmode = "disable"
	}
	c.PostgresExporter = PostgresExporterSettings{
		Bin:          e.get("POSTGRES_EXPORTER_BIN", findProgram(path, "prometheus-postgres-exporter", "postgres_exporter")),
		Listen:       e.addr("POSTGRES_EXPORTER_LISTEN", "127.0.0.1:9187", false),
		User:         e.get("POSTGRES_EXPORTER_USER", "carteiro_monitor"),
		Password:     e.get("POSTGRES_EXPORTER_PASSWORD", DevOnlyExporterPassword),
		PasswordFile: e.get("POSTGRES_EXPORTER_PASSWORD_FILE", ""),
		SSLMode:      e.get("POSTGRES_EXPORTER_SSLMODE", sslmode),
		Queries:      e.get("POSTGRES_EXPORTER_QUERIES", filepath.Join(c.Root, "observability", "postgres-exporter", "queries.yaml")),
		Skip:         e.bool("SKIP_POSTGRES_EXPORTER"),
	}
	db, err := strconv.Atoi(e.get("REDIS_DB", "0"))
	if err != nil || db < 0 {
		e.fail("REDIS_DB", "got %q, want a database number", e.get("REDIS_DB", ""))
	}
	c.RedisExporter = RedisExporterSettings{
		Bin:          e.get("REDIS_EXPORTER_BIN", findProgram(path, "prometheus-redis-exporter", "redis_exporter")),
		Listen:       e.addr("REDIS_EXPORTER_LISTEN", "127.0.0.1:9121", false),
		User:         e.get("REDIS_EXPORTER_USER", "carteiro-exporter"),
		Password:     e.get("REDIS_EXPORTER_PASSWORD", DevOnlyExporterPassword),
		PasswordFile: e.get("REDIS_EXPORTER_PASSWORD_FILE", ""),
		Stream:       e.get("REDIS_STREAM", "carteiro:emails"),
		DB:           db,
		Skip:         e.bool("SKIP_REDIS_EXPORTER"),
	}
	c.SkipExporterSetup = e.bool("SKIP_EXPORTER_SETUP")
}

// AlertmanagerVars are the values the alertmanager component renders
// observability/alertmanager/alertmanager.native.yml.template with.
func (c Config) AlertmanagerVars() map[string]string {
	return map[string]string{
		"SMTP_SMARTHOST": DialAddr(c.Alertmanager.SMTPAddr),
		"ALERTS_FROM":    c.Alertmanager.From,
		"ALERTS_TO":      c.Alertmanager.To,
		"TEMPLATES_DIR":  filepath.Join(c.Root, "observability", "alertmanager", "templates"),
	}
}

// RenderAlertmanager renders the Alertmanager template into out with
// c.AlertmanagerVars; a ${NAME} left over is an error.
func (c Config) RenderAlertmanager(out string) error {
	b, err := os.ReadFile(c.Alertmanager.Template)
	if err != nil {
		return fmt.Errorf("Alertmanager template (ALERTMANAGER_TEMPLATE): %w", err)
	}
	vars := c.AlertmanagerVars()
	text := nginxtemplate.Expand(string(b), vars)
	if left := placeholderRe.FindAllString(text, -1); len(left) > 0 {
		return fmt.Errorf("%s: placeholders %v are not provided (only %v)", c.Alertmanager.Template, left, sortedKeys(vars))
	}
	return writeFileAtomic(out, []byte(text))
}

func (c Config) alertmanager(mailpit bool) Component {
	a := c.Alertmanager
	cfg, data := filepath.Join(c.Dir, "alertmanager.yml"), filepath.Join(c.Dir, "alertmanager-data")
	comp := Component{
		Name: "alertmanager", Path: a.Bin,
		// No cluster: one instance, and no gossip port to collide with.
		Args: []string{"--config.file=" + cfg, "--storage.path=" + data, "--web.listen-address=" + a.Listen,
			"--cluster.listen-address="},
		Listen: []string{a.Listen}, ReadyURL: "http://" + DialAddr(a.Listen) + "/-/ready",
		Prepare: func(context.Context, Logf) error {
			if err := c.RenderAlertmanager(cfg); err != nil {
				return err
			}
			return os.MkdirAll(data, 0o755)
		},
	}
	if mailpit {
		comp.DependsOn = []string{"mailpit"}
	}
	switch {
	case a.Skip:
		comp.Skip = "SKIP_ALERTMANAGER=1"
	case a.Bin == "":
		comp.Skip = "no Alertmanager (apt-get install prometheus-alertmanager, or set ALERTMANAGER_BIN); alerts show in Prometheus only"
	}
	return comp
}

func (c Config) postgresExporter() Component {
	e := c.PostgresExporter
	env := []string{
		"DATA_SOURCE_NAME=", // set, it would win over the URI below
		"DATA_SOURCE_URI=" + net.JoinHostPort(c.DB.Host, c.DB.Port) + "/" + c.DB.Name + "?sslmode=" + e.SSLMode,
		"DATA_SOURCE_USER=" + e.User,
	}
	if e.PasswordFile != "" {
		env = append(env, "DATA_SOURCE_PASS_FILE="+e.PasswordFile)
	} else {
		env = append(env, "DATA_SOURCE_PASS="+e.Password)
	}
	comp := Component{
		Name: "postgres-exporter", Path: e.Bin, Env: env,
		// Flag spelling shared by Debian's 0.11 and upstream 0.20 (kingpin).
		Args:   []string{"--web.listen-address=" + e.Listen, "--extend.query-path=" + e.Queries},
		Listen: []string{e.Listen}, ReadyURL: "http://" + DialAddr(e.Listen) + "/metrics",
		Prepare: func(ctx context.Context, logf Logf) error {
			if _, err := os.Stat(e.Queries); err != nil {
				return fmt.Errorf("postgres_exporter queries (POSTGRES_EXPORTER_QUERIES): %w", err)
			}
			if c.SkipExporterSetup {
				return nil
			}
			return c.SetupMonitorRole(ctx)
		},
	}
	switch {
	case e.Skip:
		comp.Skip = "SKIP_POSTGRES_EXPORTER=1"
	case e.Bin == "":
		comp.Skip = "no postgres_exporter (apt-get install prometheus-postgres-exporter, or set POSTGRES_EXPORTER_BIN); the postgres job will be down"
	}
	return comp
}

// redisExporterURL is the address redis_exporter is given, and the key of
// its password file.
func (c Config) redisExporterURL() string { return "redis://" + c.RedisAddr }

func (c Config) redisExporter() Component {
	e := c.RedisExporter
	passwords := filepath.Join(c.Dir, "redis-exporter-passwords.json")
	comp := Component{
		Name: "redis-exporter", Path: e.Bin,
		// redis_exporter reads REDIS_PASSWORD as its password (the stack's
		// is the default user's) and REDIS_USER: neither is its own here.
		Env: []string{"REDIS_PASSWORD=", "REDIS_USER="},
		// Go flags, the same in Debian's 1.45 and upstream 1.88. With
		// --config-command=- 1.88 skips CONFIG GET; 1.45 sends `-`, an
		// unknown command Redis refuses before any ACL check.
		Args: []string{"--redis.addr=" + c.redisExporterURL(), "--redis.user=" + e.User,
			"--redis.password-file=" + passwords, "--web.listen-address=" + e.Listen,
			"--check-single-streams=db" + strconv.Itoa(e.DB) + "=" + e.Stream,
			"--config-command=-", "--set-client-name=false"},
		Listen: []string{e.Listen}, ReadyURL: "http://" + DialAddr(e.Listen) + "/metrics",
		Prepare: func(ctx context.Context, logf Logf) error {
			password, err := readSecret(e.Password, e.PasswordFile, "REDIS_EXPORTER_PASSWORD_FILE")
			if err != nil {
				return err
			}
			// redis_exporter's password file maps each Redis URL to its password.
			b, _ := json.Marshal(map[string]string{c.redisExporterURL(): password})
			if err := os.WriteFile(passwords, b, 0o600); err != nil {
				return err
			}
			if c.SkipExporterSetup {
				return nil
			}
			return c.SetupRedisExporterUser(ctx)
		},
	}
	switch {
	case e.Skip:
		comp.Skip = "SKIP_REDIS_EXPORTER=1"
	case e.Bin == "":
		comp.Skip = "no redis_exporter (apt-get install prometheus-redis-exporter, or set REDIS_EXPORTER_BIN); the redis job will be down"
	}
	return comp
}

// readSecret is value, or the password in file (secretfile.Read, as the
// services' *_FILE) when file is set; variable names the file's setting in
// errors.
func readSecret(value, file, variable string) (string, error) {
	if file == "" {
		return value, nil
	}
	v, err := secretfile.Read(file)
	if err != nil {
		return "", fmt.Errorf("%s: %w", variable, err)
	}
	return v, nil
}
