package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/carteiro/carteiro/services/internal/stacktest"
	"github.com/carteiro/carteiro/services/internal/testenv"
)

// windowScale divides every window and `for` of the alert rules in this
// test's Prometheus (devstack's PROMETHEUS_RULES_WINDOW_SCALE): the
// fast burn's hour is a minute, its 5 minutes 5 seconds, its `for` 2 s.
// The rules in the repository keep the workbook's windows.
const windowScale = "60"

// TestSMTPFailureAlertArrivesAsMail: the relay answers 550 to every
// message, so each one becomes a dead letter. The delivery-success SLO
// burns its budget a thousand times too fast, Prometheus fires
// CarteiroDeliverySuccessFastBurn, and Alertmanager mails it, as a page,
// through Mailpit to alertas@…, with its summary and its runbook. The same
// mailbox gets no page about the api's availability, which is fine.
func TestSMTPFailureAlertArrivesAsMail(t *testing.T) {
	relay := testenv.StartSMTP(t)
	relay.Reply(func(int) error { return testenv.Error(550, "5.7.1 relaying denied") })
	// The workers send to the failing relay; Mailpit still runs, and
	// Alertmanager mails through it (ALERTMANAGER_SMTP_ADDR defaults to
	// Mailpit's address, never the workers' relay).
	s := startStack(t, stackOptions{observability: true, extraEnv: map[string]string{
		"SMTP_HOST": "127.0.0.1", "SMTP_PORT": relay.Port(),
		"PROMETHEUS_RULES_WINDOW_SCALE": windowScale,
	}})

	// Keep the traffic going, a message every 200 ms, until the mail is in:
	// with the short window at 5 s, the alert resolves soon after it stops.
	ctx, stop := context.WithCancel(context.Background())
	var submitted atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ctx.Err() == nil; i++ {
			body := fmt.Sprintf(`{"assunto":"alerta %d","mensagem":"o relay recusa tudo"}`, i)
			req, _ := http.NewRequestWithContext(ctx, "POST", s.URL+"/api/messages", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Origin", s.URL)
			if res, err := stacktest.Client.Do(req); err == nil {
				if res.StatusCode == http.StatusAccepted {
					submitted.Add(1)
				}
				res.Body.Close()
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	defer func() { stop(); <-done }()

	const alert = "CarteiroDeliverySuccessFastBurn"
	waitFor(t, 2*time.Minute, "Prometheus to fire "+alert, func() bool {
		return len(s.promQuery(`ALERTS{alertname="`+alert+`", alertstate="firing"}`)) > 0
	}, s.logs)

	var mail stacktest.MailpitMessage
	waitFor(t, 2*time.Minute, "the "+alert+" mail in Mailpit", func() bool {
		for _, m := range s.Mails() {
			if strings.Contains(m.Subject, alert) {
				mail = s.Mail(m.ID)
				return true
			}
		}
		return false
	}, func() string { return s.LogText("alertmanager") })
	stop()
	<-done

	if len(mail.To) != 1 || mail.To[0].Address != "alertas@carteiro.localhost" || mail.From.Address != "alertmanager@carteiro.localhost" {
		t.Errorf("alert mail: from %v to %v, want alertmanager@ to alertas@carteiro.localhost", mail.From, mail.To)
	}
	if want := "[PAGE] " + alert + " firing (1): delivery success: the error budget burns "; !strings.HasPrefix(mail.Subject, want) {
		t.Errorf("subject: got %q, want it to start with %q (a page: severity critical)", mail.Subject, want)
	}
	runbook := "https://github.com/carteiro/carteiro/blob/main/observability/runbooks/" + alert + ".md"
	for _, want := range []string{
		"Summary: delivery success: the error budget burns ",
		"Over the last 1h and the last 5m the delivery success SLO's error budget burned",
		"Runbook: " + runbook,
		"slo=delivery-success",
	} {
		if !strings.Contains(mail.Text, want) {
			t.Errorf("alert mail body: got\n%s\nwant %q in it", mail.Text, want)
		}
	}
	// The link names a runbook of this repository.
	if _, err := os.Stat(filepath.Join(repoRoot(t), "observability", "runbooks", alert+".md")); err != nil {
		t.Errorf("runbook of the mail: %v", err)
	}
	// What the alert is about: every message was refused, none was lost
	// from Postgres (each is dead, waiting for `worker reprocess --dead`).
	var dead int
	s.queryRow(`SELECT count(*) FROM emails WHERE status = 'dead'`, nil, &dead)
	if dead == 0 || relay.Attempts() == 0 {
		t.Errorf("dead letters: got %d (relay saw %d attempts), want the refused messages dead", dead, relay.Attempts())
	}
	for _, m := range s.Mails() {
		if strings.Contains(m.Subject, "CarteiroAPIAvailability") {
			t.Errorf("got a mail %q, want none about the api: it answered every request", m.Subject)
		}
	}
	t.Logf("%d messages submitted, %d dead; alert mail %q", submitted.Load(), dead, mail.Subject)
}

// waitFor polls cond every half second for up to timeout; then it fails
// the test with what, and what each of show says.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool, show ...func() string) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(500 * time.Millisecond) {
		if time.Now().After(deadline) {
			var b strings.Builder
			for _, f := range show {
				b.WriteString(f())
			}
			t.Fatalf("gave up waiting for %s\n%s", what, b.String())
		}
	}
}
