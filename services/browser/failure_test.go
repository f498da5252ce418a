package browser

import (
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/carteiro/carteiro/services/internal/stacktest"
	"github.com/carteiro/carteiro/services/internal/testenv"
)

// TestFailureShownWithoutRelayReply sends two messages through a relay
// that defers one (451) and refuses the other (550), each reply naming
// internal hosts: the page shows the kind of failure in pt-BR (temporary,
// with the next attempt's time; permanent), never the reply.
func TestFailureShownWithoutRelayReply(t *testing.T) {
	chromium(t)
	const internal = "relay-2.interno.example [10.44.0.9]"
	smtp := testenv.StartSMTP(t)
	smtp.ReplyFor(func(_ int, m *mail.Message) error {
		if m == nil {
			return nil
		}
		switch m.Header.Get("Subject") {
		case "adiada":
			return testenv.Error(451, "4.7.1 greylisted by "+internal)
		case "recusada":
			return testenv.Error(550, "5.1.1 <contato@interno.example> unknown at "+internal)
		}
		return nil
	})
	// A retry far enough away that the page sees the temporary failure.
	s := stacktest.Start(t, stacktest.Options{SMTPAddr: smtp.Addr,
		ExtraEnv: map[string]string{"RETRY_BASE_DELAY": "10m", "RETRY_MAX_DELAY": "20m"}})
	tb := newTab(t, s, tabOptions{})

	cases := []struct{ assunto, status, want string }{
		{"adiada", "failed", "(falha temporária; próxima tentativa às "},
		{"recusada", "dead", "(falha permanente)"},
	}
	for _, c := range cases {
		t.Run(c.assunto, func(t *testing.T) {
			tb.t = t
			tb.open()
			tb.fill(c.assunto, "corpo")
			tb.do(chromedp.Click(chromedp.ID("enviar")))
			js := `document.getElementById("message-status").dataset.status === "` + c.status + `" && document.getElementById("message-failure").textContent !== ""`
			if _, err := chromedp.Run(tb.ctx, chromedp.Poll[bool](js, chromedp.WithPollingTimeout(30*time.Second))); err != nil {
				t.Fatalf("the page never showed %s with a failure: %v (status %q, failure %q)", c.status, err,
					tb.text("message-status"), tb.text("message-failure"))
			}
			if got := tb.text("message-failure"); !strings.HasPrefix(got, c.want) {
				t.Errorf("failure on the page %q, want it to start with %q", got, c.want)
			}
			page := eval[string](tb, `document.body.innerText`)
			for _, secret := range []string{"10.44.0.9", "interno.example", "greylisted", "5.1.1"} {
				if strings.Contains(page, secret) {
					t.Errorf("the page shows %q:\n%s", secret, page)
				}
			}
			var lastError string
			s.QueryRow("SELECT coalesce(last_error, '') FROM emails WHERE assunto = $1", []any{c.assunto}, &lastError)
			if !strings.Contains(lastError, "10.44.0.9") {
				t.Errorf("last_error in Postgres %q, want the relay's reply kept", lastError)
			}
		})
	}
	tb.t = t
}
