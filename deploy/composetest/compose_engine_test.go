//go:build composetest

package composetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startedServices are the services `up` starts and keeps running here:
// every service of the two files but grafana (compose.test-override.yml),
// k6 (profile load) and the one-shot jobs.
var startedServices = []string{"alertmanager", "app", "db", "frontend", "jaeger", "mail", "nginx-exporter",
	"otelcol", "postgres-exporter", "prometheus", "queue", "redis-exporter", "worker"}

// oneShotServices run once at `up` and exit 0 (db-monitor-role makes
// postgres-exporter's role); what needs them waits for
// service_completed_successfully.
var oneShotServices = []string{"db-monitor-role"}

// running is cs without the one-shot jobs' exited containers: what runs,
// listens and can be probed.
func running(cs map[string]Container) map[string]Container {
	out := map[string]Container{}
	for svc, c := range cs {
		if !slices.Contains(oneShotServices, svc) {
			out[svc] = c
		}
	}
	return out
}

// TestComposeUnderEngine runs `make up`'s compose command (both files, plus
// the test's override) under the Docker Engine and checks the deployment's
// promises as states. The steps share one stack and run in order.
func TestComposeUnderEngine(t *testing.T) {
	h := newHarness(t)
	if !t.Run("up: every service healthy", h.testUp) {
		t.FailNow()
	}
	t.Run("only the documented ports are published", h.testPorts)
	t.Run("hardening at run time", h.testHardening)
	t.Run("segmentation", h.testSegmentation)
	t.Run("a message reaches Mailpit and its trace Jaeger", h.testDelivery)
	t.Run("restart app under a trickle of posts", h.testRestartApp)
	t.Run("kill -9 worker mid-burst, then up: nothing lost", h.testKillWorker)
	t.Run("app unhealthy while db is stopped", h.testHealthFollowsDB)
	t.Run("data survives down and up", h.testDownUp)
	t.Run("down -v leaves nothing behind", h.testDownVolumes)
}

// testUp: `docker compose ... up -d --build --wait`, then every started
// service is running, and healthy when it has a healthcheck; the time from
// each container's start to its first healthy probe is printed.
func (h *harness) testUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := h.project.Compose(ctx, "up", "-d", "--build", "--wait", "--wait-timeout", "900")
	if err != nil {
		t.Fatalf("up: %v\n%s", err, out)
	}
	t.Logf("up -d --build --wait: %v (app and worker images built by compose, from services/Dockerfile)", time.Since(start).Round(time.Second))

	cs, err := h.project.Containers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := sortedKeys(cs), sortedKeys(running(cs)); !slices.Equal(want, startedServices) {
		t.Errorf("services started: got %v, want %v and the one-shot %v", got, startedServices, oneShotServices)
	}
	lines := []string{}
	for _, svc := range oneShotServices {
		c, ok := cs[svc]
		if !ok || c.State.Running || c.State.ExitCode != 0 {
			t.Errorf("%s: got %+v, want it to have run and exited 0", svc, c.State)
			continue
		}
		lines = append(lines, fmt.Sprintf("  %-17s ran once, exit 0", svc))
	}
	for _, svc := range sortedKeys(running(cs)) {
		c := cs[svc]
		if !c.State.Running {
			t.Errorf("%s: got state %s, want running", svc, c.State.Status)
			continue
		}
		if c.State.Health == nil {
			lines = append(lines, fmt.Sprintf("  %-17s running (no healthcheck)", svc))
			continue
		}
		if c.State.Health.Status != "healthy" {
			t.Errorf("%s: got health %s, want healthy", svc, c.State.Health.Status)
			continue
		}
		started, err1 := h.events.Wait(ctx, start, svc, "start")
		healthy, err2 := h.events.Wait(ctx, start, svc, "health_status: healthy")
		if err1 != nil || err2 != nil {
			t.Errorf("%s: events: %v %v", svc, err1, err2)
			continue
		}
		lines = append(lines, fmt.Sprintf("  %-17s healthy %6.1fs after its start (%5.1fs after up began)", svc,
			healthy.Time.Sub(started.Time).Seconds(), healthy.Time.Sub(start).Seconds()))
	}
	t.Logf("time to healthy (Engine 20.10 ignores start_interval: probes every 10 s):\n%s", strings.Join(lines, "\n"))
}

// testPorts: the published ports are exactly the documented ones: the edge
// on every interface, the development UIs on 127.0.0.1 (README, Threat model).
func (h *harness) testPorts(t *testing.T) {
	ctx := context.Background()
	cs, err := h.project.Containers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"frontend/8080/tcp":     "0.0.0.0:" + h.httpPort,
		"mail/8025/tcp":         "127.0.0.1:" + h.mailPort,
		"jaeger/16686/tcp":      "127.0.0.1:" + h.jaegerPort,
		"prometheus/9090/tcp":   "127.0.0.1:" + h.promPort,
		"alertmanager/9093/tcp": "127.0.0.1:" + h.alertmanagerPort,
	}
	got := map[string]string{}
	for _, svc := range sortedKeys(cs) {
		for port, bindings := range cs[svc].NetworkSettings.Ports {
			var hosts []string
			for _, b := range bindings {
				if b.HostIP == "::" {
					continue // the IPv6 twin of 0.0.0.0 on newer engines
				}
				hosts = append(hosts, b.HostIP+":"+b.HostPort)
			}
			if len(hosts) > 0 {
				got[svc+"/"+port] = strings.Join(hosts, ",")
			}
		}
	}
	for _, k := range sortedKeys(got) {
		if want[k] != got[k] {
			t.Errorf("published %s: got %s, want %q", k, got[k], want[k])
		}
	}
	for _, k := range sortedKeys(want) {
		if _, ok := got[k]; !ok {
			t.Errorf("published %s: got nothing, want %s", k, want[k])
		}
		svc, port, _ := strings.Cut(k, "/")
		out, err := h.project.Compose(ctx, "port", svc, strings.TrimSuffix(port, "/tcp"))
		if err != nil {
			t.Errorf("compose port %s %s: %v", svc, port, err)
		} else if strings.TrimSpace(out) != want[k] {
			t.Errorf("compose port %s %s: got %q, want %q", svc, port, strings.TrimSpace(out), want[k])
		}
	}
	t.Logf("published: %v", got)
}

// testHardening: every container runs non-root (its configured user and
// every process `docker top` shows), with a read-only root filesystem, no
// capability and no-new-privileges; each service's secrets are readable by
// its uid/gid and their values are in no container's environment, nor in
// its main process's environment or command line.
func (h *harness) testHardening(t *testing.T) {
	ctx := context.Background()
	cs, err := h.project.Containers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A one-shot job has exited: no process to look at (its user, files and
	// options are the compose policy's, services/internal/deploy).
	cs = running(cs)
	secrets := map[string]string{}
	for name, file := range h.topo.SecretFiles {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("secret %s: %v", name, err)
		}
		if len(b) < 16 {
			t.Fatalf("secret %s: %d bytes, want a generated value (make secrets)", name, len(b))
		}
		secrets[name] = string(b)
	}
	for _, svc := range sortedKeys(cs) {
		c := cs[svc]
		t.Run(svc, func(t *testing.T) {
			if u := c.Config.User; u == "" || u == "root" || u == "0" || strings.HasPrefix(u, "0:") || strings.HasPrefix(u, "root:") {
				t.Errorf("configured user: got %q, want a non-root user", u)
			}
			procs, err := h.project.Processes(ctx, c.ID)
			if err != nil || len(procs) == 0 {
				t.Fatalf("docker top: %v (%d processes)", err, len(procs))
			}
			for _, p := range procs {
				if p.UID == "0" || p.GID == "0" {
					t.Errorf("process %s (%s): got uid %s gid %s, want non-root", p.PID, p.Args, p.UID, p.GID)
				}
			}
			if !c.HostConfig.ReadonlyRootfs {
				t.Errorf("read-only root filesystem: got false, want true")
			}
			if !slices.Contains(c.HostConfig.CapDrop, "ALL") || len(c.HostConfig.CapAdd) > 0 || c.HostConfig.Privileged {
				t.Errorf("capabilities: got drop %v add %v privileged %v, want drop ALL only", c.HostConfig.CapDrop, c.HostConfig.CapAdd, c.HostConfig.Privileged)
			}
			if !slices.Contains(c.HostConfig.SecurityOpt, "no-new-privileges:true") {
				t.Errorf("security options: got %v, want no-new-privileges:true", c.HostConfig.SecurityOpt)
			}

			// Secrets: readable as the service's own uid/gid (that of its
			// main process), through its own mounts.
			if names := h.topo.Secrets[svc]; len(names) > 0 {
				var files []string
				for _, n := range names {
					files = append(files, "/run/secrets/"+n)
				}
				rep, err := h.engine.ReadAs(ctx, h.probe, c.ID, procs[0].UID, procs[0].GID, files)
				if err != nil {
					t.Fatalf("read secrets as %s:%s: %v", procs[0].UID, procs[0].GID, err)
				}
				for i, r := range rep.Reads {
					if want := len(secrets[names[i]]); !r.OK || r.Bytes != want {
						t.Errorf("secret %s as uid %s: got ok=%v %d bytes (%s), want readable, %d bytes", r.Path, procs[0].UID, r.OK, r.Bytes, r.Error, want)
					}
				}
			}
			for _, kv := range c.Config.Env {
				for name, v := range secrets {
					if strings.Contains(kv, v) {
						k, _, _ := strings.Cut(kv, "=")
						t.Errorf("environment %s: got the value of secret %s, want only its file", k, name)
					}
				}
			}
			main := strconv.Itoa(c.State.Pid)
			for _, what := range []string{"environ", "cmdline"} {
				b, err := os.ReadFile("/proc/" + main + "/" + what)
				if err != nil {
					t.Errorf("/proc/%s/%s: %v", main, what, err)
					continue
				}
				for name, v := range secrets {
					if bytes.Contains(b, []byte(v)) {
						t.Errorf("main process %s: got the value of secret %s in its %s, want it absent", main, name, what)
					}
				}
			}
		})
	}
}

// message is the API's answer to a POST.
type message struct {
	ID      string `json:"id"`
	Status  string `json:"status"`
	TraceID string `json:"trace_id"`
}

// post sends one message through the published frontend port. It returns
// the status code, the answer (on 202) and a transport error.
func (h *harness) post(assunto, mensagem string, headers ...string) (int, message, error) {
	body, _ := json.Marshal(map[string]string{"assunto": assunto, "mensagem": mensagem})
	req, _ := http.NewRequest(http.MethodPost, h.url(h.httpPort, "/api/messages"), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := client.Do(req)
	if err != nil {
		return 0, message{}, err
	}
	defer res.Body.Close()
	var m message
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode == http.StatusAccepted {
		if err := json.Unmarshal(b, &m); err != nil {
			return res.StatusCode, m, fmt.Errorf("202 answer %q: %w", b, err)
		}
	}
	return res.StatusCode, m, nil
}

// mails counts Mailpit's messages by Message-ID (published UI port).
func (h *harness) mails() (map[string]int, error) {
	var list struct {
		Messages []struct{ MessageID string }
	}
	if _, err := getJSON(h.url(h.mailPort, "/api/v1/messages?limit=1000"), &list); err != nil {
		return nil, err
	}
	n := map[string]int{}
	for _, m := range list.Messages {
		n[m.MessageID]++
	}
	return n, nil
}

// messageID is the Message-ID the worker gives a message (MAIL_FROM's
// domain in docker-compose.yml).
func messageID(id string) string { return id + "@carteiro.localhost" }

// testDelivery: a POST through the published edge is accepted, delivered
// (its status says sent, its mail is in Mailpit) and its trace, from the
// api's server span to the worker's SMTP span, is in Jaeger's API.
func (h *harness) testDelivery(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	callerTrace := randomHex(16)
	code, m, err := h.post("Olá do compose", "Tudo bem?", "traceparent", "00-"+callerTrace+"-"+randomHex(8)+"-01")
	if err != nil || code != http.StatusAccepted {
		t.Fatalf("POST /api/messages: got %d %v, want 202", code, err)
	}
	// The api starts its own trace (it links the caller's, never joins it).
	traceID := m.TraceID
	if len(traceID) != 32 || traceID == callerTrace {
		t.Errorf("trace id: got %q, want a trace of carteiro's own, not the caller's %s", traceID, callerTrace)
	}
	h.firstID = m.ID
	err = waitUntil(ctx, "message "+m.ID+" sent", func() (bool, error) {
		var st message
		_, err := getJSON(h.url(h.httpPort, "/api/messages/"+m.ID), &st)
		return st.Status == "sent", err
	})
	if err != nil {
		t.Fatal(err)
	}
	err = waitUntil(ctx, "its mail in Mailpit", func() (bool, error) {
		n, err := h.mails()
		return n[messageID(m.ID)] == 1, err
	})
	if err != nil {
		t.Fatal(err)
	}

	type trace struct {
		Spans []struct {
			OperationName string
			ProcessID     string `json:"processID"`
		}
		Processes map[string]struct{ ServiceName string }
	}
	want := map[string][]string{
		"carteiro-api":    {"POST /api/messages", "INSERT"},
		"carteiro-worker": {"process emails", "smtp send"},
	}
	var seen map[string][]string
	err = waitUntil(ctx, "trace "+traceID+" in Jaeger", func() (bool, error) {
		var res struct{ Data []trace }
		if _, err := getJSON(h.url(h.jaegerPort, "/api/traces/"+traceID), &res); err != nil || len(res.Data) != 1 {
			return false, err
		}
		seen = map[string][]string{}
		for _, s := range res.Data[0].Spans {
			svc := res.Data[0].Processes[s.ProcessID].ServiceName
			seen[svc] = append(seen[svc], s.OperationName)
		}
		for svc, ops := range want {
			for _, op := range ops {
				if !slices.Contains(seen[svc], op) {
					return false, nil
				}
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("%v (spans seen: %v)", err, seen)
	}
	for svc := range seen {
		sort.Strings(seen[svc])
	}
	t.Logf("message %s sent, in Mailpit; trace %s in Jaeger: %v (no nginx span: the frontend stand-in has no otel module)", m.ID, traceID, seen)

	// Prometheus, on the internal observabilidade network, scrapes the api,
	// the worker and nginx (through the exporter).
	err = waitUntil(ctx, "Prometheus targets up", func() (bool, error) {
		var res struct {
			Data struct {
				Result []struct {
					Metric map[string]string
					Value  []any
				}
			}
		}
		if _, err := getJSON(h.url(h.promPort, "/api/v1/query?query=up"), &res); err != nil {
			return false, err
		}
		up := map[string]bool{}
		for _, r := range res.Data.Result {
			up[r.Metric["job"]] = len(r.Value) == 2 && r.Value[1] == "1"
		}
		return up["carteiro-api"] && up["carteiro-worker"] && up["nginx"] && up["prometheus"] &&
			up["postgres"] && up["redis"], nil
	})
	if err != nil {
		t.Error(err)
	}
	// The exporters log in with their least-privilege logins (the role
	// db-monitor-role made, the queue's ACL user): each reaches its store
	// and reads carteiro's own series; and Prometheus sends its alerts to
	// Alertmanager.
	for _, q := range []string{"pg_up", "redis_up", "pg_carteiro_emails_total_bytes",
		`redis_stream_group_messages_pending{group="carteiro-workers"}`} {
		err = waitUntil(ctx, q+" from the exporters", func() (bool, error) {
			var res struct {
				Data struct{ Result []struct{ Value []any } }
			}
			if _, err := getJSON(h.url(h.promPort, "/api/v1/query?query="+url.QueryEscape(q)), &res); err != nil {
				return false, err
			}
			return len(res.Data.Result) == 1 && len(res.Data.Result[0].Value) == 2 &&
				(!strings.HasSuffix(q, "_up") || res.Data.Result[0].Value[1] == "1"), nil
		})
		if err != nil {
			t.Error(err)
		}
	}
	err = waitUntil(ctx, "Alertmanager among Prometheus's alertmanagers", func() (bool, error) {
		var res struct {
			Data struct {
				ActiveAlertmanagers []struct{ URL string } `json:"activeAlertmanagers"`
			}
		}
		if _, err := getJSON(h.url(h.promPort, "/api/v1/alertmanagers"), &res); err != nil {
			return false, err
		}
		return len(res.Data.ActiveAlertmanagers) == 1 && strings.Contains(res.Data.ActiveAlertmanagers[0].URL, "alertmanager:9093"), nil
	})
	if err != nil {
		t.Error(err)
	}
}
