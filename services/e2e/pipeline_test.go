package e2e

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/carteiro/carteiro/services/internal/testenv"
)

// The product's promise, end to end: a form posted through nginx lands in
// the inbox with the same subject and body and the row's Message-ID.
func TestFormPostArrivesInMailpit(t *testing.T) {
	s := startStack(t, stackOptions{})

	res, body := s.request("GET", "/", "", "")
	if res.StatusCode != 200 || !strings.Contains(body, `name="assunto"`) || !strings.Contains(body, "Enviar !") {
		t.Fatalf("page: got %d\n%s", res.StatusCode, body)
	}
	if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("CSP: got %q, want default-src 'self'", csp)
	}
	for _, h := range []string{"X-Content-Type-Options", "Referrer-Policy"} {
		if res.Header.Get(h) == "" {
			t.Errorf("header %s missing on the page", h)
		}
	}

	assunto := `Olá de "carteiro" <teste> & ção 🙂`
	mensagem := "Primeira linha\r\nSegunda: <b>negrito?</b> ' OR 1=1; --"
	form := url.Values{"assunto": {assunto}, "mensagem": {mensagem}}
	res, body = s.request("POST", "/api", "application/x-www-form-urlencoded", form.Encode(), "Origin", s.URL)
	if res.StatusCode != http.StatusAccepted || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("form post: got %d %s\n%s", res.StatusCode, res.Header.Get("Content-Type"), body)
	}
	if strings.Contains(body, "<teste>") || !strings.Contains(body, "&lt;teste&gt;") {
		t.Errorf("confirmation page must escape the subject:\n%s", body)
	}
	loc := res.Header.Get("Location")
	id := strings.TrimPrefix(loc, "/api/messages/")
	if id == loc || id == "" {
		t.Fatalf("Location: got %q, want /api/messages/{id}", loc)
	}

	st := s.waitStatus(id, "sent")
	if st.Attempts != 1 {
		t.Errorf("attempts: got %d, want 1", st.Attempts)
	}
	mid := s.messageID(id)
	mail, copies := s.mailByMessageID(mid)
	if copies != 1 {
		t.Fatalf("mails with Message-ID %s: got %d, want 1\n%s", mid, copies, s.logs())
	}
	if mail.Subject != assunto {
		t.Errorf("subject: got %q, want %q", mail.Subject, assunto)
	}
	wantBody := strings.ReplaceAll(mensagem, "\r\n", "\n")
	if got := strings.TrimRight(strings.ReplaceAll(mail.Text, "\r\n", "\n"), "\n"); got != wantBody {
		t.Errorf("body: got %q, want %q", got, wantBody)
	}
	if mail.From.Address != "carteiro@carteiro.test" || len(mail.To) != 1 || mail.To[0].Address != "contato@carteiro.test" {
		t.Errorf("envelope: got from %v to %v, want the configured addresses", mail.From, mail.To)
	}

	// A JSON client gets the same delivery.
	id = s.submitJSON("json", "corpo")
	s.waitStatus(id, "sent")
	if _, n := s.mailByMessageID(s.messageID(id)); n != 1 {
		t.Errorf("JSON-submitted mail: got %d copies, want 1", n)
	}
}

// Every kind of bad input is refused with a clear 4xx through nginx, and
// nothing is stored.
func TestBadInputThroughNginx(t *testing.T) {
	s := startStack(t, stackOptions{})
	const jsonType, formType = "application/json", "application/x-www-form-urlencoded"
	tests := []struct {
		name        string
		contentType string
		body        string
		headers     []string
		want        int
		wantText    string
	}{
		{"missing fields", jsonType, `{}`, nil, 400, "assunto is required"},
		{"blank subject", jsonType, `{"assunto":"  ","mensagem":"x"}`, nil, 400, "assunto must not be blank"},
		{"over-long subject", jsonType, `{"assunto":"` + strings.Repeat("a", 101) + `","mensagem":"x"}`, nil, 400, "at most 100"},
		{"over-long body", jsonType, `{"assunto":"a","mensagem":"` + strings.Repeat("b", 251) + `"}`, nil, 400, "at most 250"},
		{"header injection", jsonType, `{"assunto":"oi\r\nBcc: all@example.com","mensagem":"x"}`, nil, 400, "line breaks"},
		{"invalid UTF-8", formType, "assunto=%C3%28&mensagem=x", nil, 400, "not valid UTF-8"},
		{"control characters", jsonType, `{"assunto":"a","mensagem":"x\u0000y"}`, nil, 400, "control characters"},
		{"malformed JSON", jsonType, `{"assunto":`, nil, 400, "malformed JSON"},
		{"unknown content type", "text/xml", `<a/>`, nil, 415, "Content-Type"},
		{"body over 64 KiB", jsonType, `{"assunto":"a","mensagem":"` + strings.Repeat("b", 70<<10) + `"}`, nil, 413, ""},
		{"1 MiB body", formType, "assunto=a&mensagem=" + strings.Repeat("b", 1<<20), nil, 413, ""},
		{"cross-site form post", formType, "assunto=a&mensagem=b", []string{"Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site"}, 403, "cross-site"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			headers := append([]string{"Accept", "application/json"}, tt.headers...)
			res, body := s.request("POST", "/api/messages", tt.contentType, tt.body, headers...)
			if res.StatusCode != tt.want {
				t.Fatalf("status: got %d, want %d (%s)", res.StatusCode, tt.want, body)
			}
			if !strings.Contains(body, tt.wantText) {
				t.Errorf("body: got %q, want it to contain %q", body, tt.wantText)
			}
		})
	}
	if n := s.countRows(); n != 0 {
		t.Errorf("rows stored: got %d, want 0", n)
	}
}

// A 4xx reply is retried until the relay accepts; a 5xx is dead at once.
// The relay's replies name internal hosts: they stay in Postgres, and the
// public status view (JSON and page, through nginx) gives only the kind of
// failure.
func TestSMTPFailuresThroughStack(t *testing.T) {
	const temporary = "4.4.1 relay-3.interno.example [10.9.8.7] try again later"
	const permanent = "5.7.1 <diretoria@interno.example>: rejected by 10.9.8.7"
	smtp := testenv.StartSMTP(t)
	smtp.Reply(func(n int) error {
		switch n {
		case 1:
			return testenv.Error(451, temporary)
		case 3:
			return testenv.Error(550, permanent)
		}
		return nil
	})
	s := startStack(t, stackOptions{smtpAddr: smtp.Addr})
	lastError := func(id string) (e string) {
		s.queryRow("SELECT coalesce(last_error, '') FROM emails WHERE id = $1", []any{id}, &e)
		return e
	}

	retried := s.submitJSON("retried", "first a 451, then accepted")
	st := s.waitStatus(retried, "sent")
	if st.Attempts != 2 || st.Failure != nil || !strings.Contains(lastError(retried), "451") {
		t.Errorf("retried: got %+v, last_error %q; want 2 attempts, no failure shown, the 451 kept in Postgres", st, lastError(retried))
	}
	dead := s.submitJSON("dead", "rejected with 550")
	st = s.waitStatus(dead, "dead")
	if st.Attempts != 1 || st.Failure == nil || st.Failure.Kind != "permanent" || st.Failure.Label != "falha permanente" {
		t.Errorf("dead: got %+v, want 1 attempt and a permanent failure", st)
	}
	if e := lastError(dead); !strings.Contains(e, "550") || !strings.Contains(e, "10.9.8.7") {
		t.Errorf("dead: last_error %q, want the 550 reply kept in Postgres", e)
	}
	if n := len(smtp.Messages()); n != 1 {
		t.Errorf("mails accepted: got %d, want 1", n)
	}
	for _, id := range []string{retried, dead} {
		for _, accept := range []string{"application/json", "text/html", ""} {
			res, body := s.request("GET", "/api/messages/"+id, "", "", "Accept", accept)
			if res.StatusCode != 200 {
				t.Errorf("GET %s (Accept %q): got %d", id, accept, res.StatusCode)
			}
			for _, secret := range []string{"10.9.8.7", "interno.example", "4.4.1", "5.7.1", "last_error"} {
				if strings.Contains(body, secret) {
					t.Errorf("GET %s (Accept %q): public answer holds %q:\n%s", id, accept, secret, body)
				}
			}
			if id == dead && accept == "text/html" && !strings.Contains(body, "falha permanente") {
				t.Errorf("status page: got no failure kind:\n%s", body)
			}
		}
	}
}

// Redis stopped while posting: every post is still accepted, and every
// message is delivered once Redis is back.
func TestRedisStoppedWhilePosting(t *testing.T) {
	s := startStack(t, stackOptions{})
	s.redis.Stop()
	var ids []string
	for i := range 5 {
		ids = append(ids, s.submitJSON("sem redis", strings.Repeat("x", i+1)))
	}
	s.redis.Start()
	for _, id := range ids {
		s.waitStatus(id, "sent")
		if _, n := s.mailByMessageID(s.messageID(id)); n != 1 {
			t.Errorf("%s: got %d mails, want 1", id, n)
		}
	}
}
