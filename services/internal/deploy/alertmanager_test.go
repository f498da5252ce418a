package deploy

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"go.yaml.in/yaml/v3"

	"github.com/carteiro/carteiro/internal/devstack"
	"github.com/carteiro/carteiro/internal/nginxtemplate"
	"github.com/carteiro/carteiro/services/internal/testenv"
)

const (
	amDir            = "observability/alertmanager"
	amComposeConfig  = amDir + "/alertmanager.yml"
	amNativeTemplate = amDir + "/alertmanager.native.yml.template"
	pgExporterDir    = "observability/postgres-exporter"
)

// composeAlertmanagerVars are the native template's placeholders with the
// values of the compose deployment: Mailpit's SMTP listener on the smtp
// network, the devstack defaults for the addresses, and the templates
// where the alertmanager service mounts them.
func composeAlertmanagerVars(t *testing.T) map[string]string {
	t.Helper()
	merged := loadProject(t, baseFile, observabilityFile)
	smtp, _ := envValue(merged.Services["mail"], "MP_SMTP_BIND_ADDR")
	_, port, _ := strings.Cut(smtp, ":")
	dev, err := devstack.Load(repoRoot(t), []string{"DEV_DIR=" + t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		"SMTP_SMARTHOST": "mail:" + port,
		"ALERTS_FROM":    dev.Alertmanager.From,
		"ALERTS_TO":      dev.Alertmanager.To,
		"TEMPLATES_DIR":  "/etc/alertmanager/templates",
	}
}

func readYAML(t *testing.T, name string, b []byte) map[string]any {
	t.Helper()
	var v map[string]any
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return v
}

// TestAlertmanagerConfigsAgree: compose's alertmanager.yml is the native
// template rendered with compose's values (the same routes, receivers,
// inhibitions and templates), the template's placeholders are those the
// native stack gives, and compose mounts the folder where the config says.
func TestAlertmanagerConfigsAgree(t *testing.T) {
	root := repoRoot(t)
	tmpl, err := os.ReadFile(filepath.Join(root, amNativeTemplate))
	if err != nil {
		t.Fatal(err)
	}
	compose, err := os.ReadFile(filepath.Join(root, amComposeConfig))
	if err != nil {
		t.Fatal(err)
	}
	vars := composeAlertmanagerVars(t)
	rendered := nginxtemplate.Expand(string(tmpl), vars)
	if left := placeholderRe.FindAllString(rendered, -1); len(left) > 0 {
		t.Fatalf("%s: got placeholders %v left, want only %v", amNativeTemplate, left, sortedKeys(vars))
	}
	if g, w := readYAML(t, amComposeConfig, compose), readYAML(t, amNativeTemplate, []byte(rendered)); !reflect.DeepEqual(g, w) {
		t.Errorf("%s: got\n%v\nwant the native template rendered with compose's values:\n%v", amComposeConfig, g, w)
	}
	dev, err := devstack.Load(root, []string{"DEV_DIR=" + t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if g, w := sortedKeys(dev.AlertmanagerVars()), sortedKeys(vars); !slices.Equal(g, w) {
		t.Errorf("devstack renders %s with %v, want %v", amNativeTemplate, g, w)
	}

	am := loadProject(t, baseFile, observabilityFile).Services["alertmanager"]
	wantMount(t, am, amDir, "/etc/alertmanager")
	for _, want := range []string{"--config.file=/etc/alertmanager/alertmanager.yml", "--cluster.listen-address="} {
		if !slices.Contains([]string(am.Command), want) {
			t.Errorf("alertmanager command: got %v, want it to contain %q", am.Command, want)
		}
	}
}

// TestAmtool: amtool accepts both configurations, templates included.
func TestAmtool(t *testing.T) {
	amtool, err := exec.LookPath("amtool")
	if err != nil {
		testenv.Missing(t, "amtool (Debian package prometheus-alertmanager): %v", err)
	}
	root := repoRoot(t)
	templates := filepath.Join(root, amDir, "templates")
	check := func(name string, b []byte) {
		f := filepath.Join(t.TempDir(), "alertmanager.yml")
		// The templates where this checkout has them, not /etc/alertmanager.
		b = []byte(strings.ReplaceAll(string(b), "/etc/alertmanager/templates", templates))
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(amtool, "check-config", f).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "1 templates") {
			t.Errorf("amtool check-config %s: %v\n%s", name, err, out)
		}
	}
	b, err := os.ReadFile(filepath.Join(root, amComposeConfig))
	if err != nil {
		t.Fatal(err)
	}
	check(amComposeConfig, b)
	dev, err := devstack.Load(root, []string{"DEV_DIR=" + t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "native.yml")
	if err := dev.RenderAlertmanager(out); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(out)
	check(amNativeTemplate, b)
}

// TestExporterServices: compose's exporters run as the native stack runs
// them: the same logins (the role db-monitor-role makes, the ACL user the
// queue defines), the same queries file, the same redis_exporter flags.
func TestExporterServices(t *testing.T) {
	root := repoRoot(t)
	merged := loadProject(t, baseFile, observabilityFile)
	dev, err := devstack.Load(root, []string{"DEV_DIR=" + t.TempDir(), "OBS=1"})
	if err != nil {
		t.Fatal(err)
	}
	pg := merged.Services["postgres-exporter"]
	wantMount(t, pg, pgExporterDir, "/etc/postgres-exporter")
	for k, v := range map[string]string{
		"DATA_SOURCE_USER":      dev.PostgresExporter.User,
		"DATA_SOURCE_PASS_FILE": "/run/secrets/pg_exporter_password",
		"DATA_SOURCE_URI":       "db:5432/carteiro?sslmode=disable",
	} {
		if got, _ := envValue(pg, k); got != v {
			t.Errorf("postgres-exporter env %s: got %q, want %q", k, got, v)
		}
	}
	if !slices.Contains([]string(pg.Command), "--extend.query-path=/etc/postgres-exporter/queries.yaml") {
		t.Errorf("postgres-exporter command: got %v, want carteiro's queries", pg.Command)
	}
	role := merged.Services["db-monitor-role"]
	wantMount(t, role, pgExporterDir, "/etc/postgres-exporter")
	cmd := strings.Join(role.Command, " ")
	for _, want := range []string{"-v role=" + dev.PostgresExporter.User, "-v password_file=/run/secrets/pg_exporter_password",
		"-f /etc/postgres-exporter/monitor-role.sql", `PGPASSWORD="$(cat /run/secrets/db_password)"`} {
		if !strings.Contains(cmd, want) {
			t.Errorf("db-monitor-role command: got %q, want %q in it", cmd, want)
		}
	}

	rx := merged.Services["redis-exporter"]
	words := strings.Fields(strings.Join(rx.Command, " "))
	var native []string
	for _, c := range dev.Components() {
		if c.Name == "redis-exporter" {
			native = c.Args
		}
	}
	for _, a := range native {
		switch {
		case strings.HasPrefix(a, "--redis.addr="), strings.HasPrefix(a, "--redis.password-file="),
			strings.HasPrefix(a, "--web.listen-address="):
			// addresses, and the password file: from the secret in compose
		case !slices.Contains(words, a):
			t.Errorf("redis-exporter command: got %v, want %q as natively", words, a)
		}
	}
	// The password file is written from the secret, for the queue's URL,
	// before the exporter runs; the secret is in no environment.
	script := strings.Join(rx.Command, " ")
	for _, want := range []string{"umask 077", `s|.*|{"redis://queue:6379":"&"}|' /run/secrets/redis_exporter_password > /tmp/redis-exporter-passwords.json`,
		"exec /redis_exporter --redis.addr=redis://queue:6379", "--redis.password-file=/tmp/redis-exporter-passwords.json"} {
		if !strings.Contains(script, want) {
			t.Errorf("redis-exporter command: got %q, want %q in it", script, want)
		}
	}
	if strings.Contains(script, "REDIS_PASSWORD") {
		t.Errorf("redis-exporter command: got %q, want the password in a file, not in REDIS_PASSWORD", script)
	}
}

// TestMonitorRoleSQL runs compose's monitor-role.sql with psql, twice,
// against a private Postgres server: the role logs in with the file's
// password and is a member of pg_monitor and of nothing else.
func TestMonitorRoleSQL(t *testing.T) {
	psql, err := exec.LookPath("psql")
	if err != nil {
		testenv.Missing(t, "psql: %v", err)
	}
	pg := testenv.StartPostgres(t)
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("it's a \"secret\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func() {
		cmd := exec.Command(psql, "--no-psqlrc", "--quiet", "-h", "127.0.0.1", "-p", strconv.Itoa(pg.Port()), "-U", "postgres",
			"-d", pg.Config.Name, "-v", "role=monitor test", "-v", "password_file="+pw,
			"-f", filepath.Join(repoRoot(t), pgExporterDir, "monitor-role.sql"))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("psql: %v\n%s", err, out)
		}
	}
	run()
	run()
	conn, err := pgx.Connect(context.Background(), pg.Config.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var roles []string
	var login, super bool
	var password string
	if err := conn.QueryRow(context.Background(), `SELECT array(SELECT b.rolname FROM pg_auth_members m
		JOIN pg_roles b ON b.oid = m.roleid WHERE m.member = a.oid), a.rolcanlogin, a.rolsuper, coalesce(a.rolpassword, '')
		FROM pg_authid a WHERE a.rolname = 'monitor test'`).Scan(&roles, &login, &super, &password); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(roles, []string{"pg_monitor"}) || !login || super || !strings.HasPrefix(password, "SCRAM-SHA-256$") {
		t.Errorf("role: member of %v, login %v, superuser %v, password %q; want a login member of pg_monitor only, with a SCRAM password",
			roles, login, super, password)
	}
}
