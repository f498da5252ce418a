package main

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/carteiro/carteiro/services/internal/testenv"
)

func TestCreateMessageRejectsBadInput(t *testing.T) {
	api := startAPI(t, testenv.NewDatabase(t), testenv.StartRedis(t).Addr)
	form := func(v url.Values) string { return v.Encode() }
	const jsonType, formType = "application/json", "application/x-www-form-urlencoded"
	tests := []struct {
		name        string
		contentType string
		body        string
		wantStatus  int
		wantCodes   map[string]string // for 400s with field problems
	}{
		{"json missing both", jsonType, `{}`, 400, map[string]string{"assunto": "required", "mensagem": "required"}},
		{"json null field", jsonType, `{"assunto":null,"mensagem":"x"}`, 400, map[string]string{"assunto": "required"}},
		{"json blank subject", jsonType, jsonBody("   ", "corpo"), 400, map[string]string{"assunto": "blank"}},
		{"json subject too long", jsonType, jsonBody(strings.Repeat("a", 101), "corpo"), 400, map[string]string{"assunto": "too_long"}},
		{"json body too long", jsonType, jsonBody("ok", strings.Repeat("é", 251)), 400, map[string]string{"mensagem": "too_long"}},
		{"json CRLF in subject", jsonType, jsonBody("a\r\nBcc: x@example.com", "corpo"), 400, map[string]string{"assunto": "control_chars"}},
		{"json NUL in body", jsonType, jsonBody("ok", "a\x00b"), 400, map[string]string{"mensagem": "control_chars"}},
		{"json invalid UTF-8", jsonType, "{\"assunto\":\"\xff\xfe\",\"mensagem\":\"ok\"}", 400, map[string]string{"assunto": "invalid_utf8"}},
		{"json not a string", jsonType, `{"assunto":1,"mensagem":"ok"}`, 400, nil},
		{"json unknown field", jsonType, `{"assunto":"a","mensagem":"b","to":"x@example.com"}`, 400, nil},
		{"json malformed", jsonType, `{"assunto":`, 400, nil},
		{"json two values", jsonType, `{"assunto":"a","mensagem":"b"}{}`, 400, nil},
		{"json array", jsonType, `[]`, 400, nil},
		{"form missing body", formType, form(url.Values{"assunto": {"oi"}}), 400, map[string]string{"mensagem": "required"}},
		{"form LF in subject", formType, form(url.Values{"assunto": {"a\nb"}, "mensagem": {"c"}}), 400, map[string]string{"assunto": "control_chars"}},
		{"form invalid UTF-8", formType, "assunto=%FF&mensagem=ok", 400, map[string]string{"assunto": "invalid_utf8"}},
		{"form malformed escape", formType, "assunto=%zz&mensagem=ok", 400, nil},
		{"unknown content type", "text/plain", "assunto=a&mensagem=b", 415, nil},
		{"multipart without fields", "multipart/form-data; boundary=x", "--x--", 400, map[string]string{"assunto": "required", "mensagem": "required"}},
		{"form invalid windows-1252", formType + "; charset=windows-1252", "assunto=%81&mensagem=ok", 400, map[string]string{"assunto": "invalid_encoding"}},
		{"form unknown charset", formType + "; charset=klingon", "assunto=a&mensagem=b", 415, nil},
		{"multipart/mixed", "multipart/mixed; boundary=x", "--x--", 415, nil},
		{"no content type", "", `{"assunto":"a","mensagem":"b"}`, 415, nil},
		{"body over 64 KiB", jsonType, jsonBody("a", strings.Repeat("b", 70<<10)), 413, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, body := api.post(t, "/api/messages", tt.contentType, tt.body, "Accept", "application/json")
			if res.StatusCode != tt.wantStatus {
				t.Fatalf("status: got %d, want %d (body %s)", res.StatusCode, tt.wantStatus, body)
			}
			e := decodeBody[errorResponse](t, body)
			if e.Error == "" {
				t.Errorf("error message: got empty, want a sentence")
			}
			for field, code := range tt.wantCodes {
				if got := string(e.Codes[field]); got != code {
					t.Errorf("code for %s: got %q, want %q", field, got, code)
				}
				if !strings.Contains(e.Fields[field], field) {
					t.Errorf("message for %s: got %q, want it to name the field", field, e.Fields[field])
				}
			}
			if len(e.Codes) != len(tt.wantCodes) {
				t.Errorf("codes: got %v, want %v", e.Codes, tt.wantCodes)
			}
		})
	}
	if n := api.countRows(t); n != 0 {
		t.Errorf("rows stored after bad input: got %d, want 0", n)
	}
}

func TestCreateMessageFormErrorIsHTML(t *testing.T) {
	api := startAPI(t, testenv.NewDatabase(t), testenv.StartRedis(t).Addr)
	res, body := api.post(t, "/api", "application/x-www-form-urlencoded", "assunto=&mensagem=<script>alert(1)</script>")
	if res.StatusCode != 400 {
		t.Fatalf("status: got %d, want 400", res.StatusCode)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("content type: got %q, want text/html", ct)
	}
	if !strings.Contains(body, "Assunto: campo obrigatório.") {
		t.Errorf("page does not name the field in pt-BR:\n%s", body)
	}
	if strings.Contains(body, "<script>") {
		t.Errorf("page echoes input unescaped:\n%s", body)
	}
}

func TestCreateMessageAcceptsJSON(t *testing.T) {
	r := testenv.StartRedis(t)
	api := startAPI(t, testenv.NewDatabase(t), r.Addr)
	const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	assunto, mensagem := `Olá <b>"mundo"</b>' OR 1=1; --`, "linha 1\r\nlinha 2 — ção 🙂"
	res, body := api.post(t, "/api/messages", "application/json", jsonBody(assunto, mensagem), "traceparent", traceparent)
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("status: got %d, want 202 (body %s)", res.StatusCode, body)
	}
	got := decodeBody[acceptedResponse](t, body)
	if got.Status != "queued" || got.ID == "" || got.StatusURL != "/api/messages/"+got.ID {
		t.Errorf("response: got %+v, want queued with its status URL", got)
	}
	if loc := res.Header.Get("Location"); loc != got.StatusURL {
		t.Errorf("Location: got %q, want %q", loc, got.StatusURL)
	}
	sa, sm, status, tp := api.row(t, got.ID)
	if sa != assunto {
		t.Errorf("stored assunto: got %q, want %q", sa, assunto)
	}
	if want := "linha 1\nlinha 2 — ção 🙂"; sm != want {
		t.Errorf("stored mensagem: got %q, want %q", sm, want)
	}
	if status != "queued" && status != "sending" && status != "sent" {
		t.Errorf("stored status: got %q, want queued", status)
	}
	// The row keeps the api's server span, in a trace of the api's own
	// (the caller's is linked, not joined: TestCallerTraceContext).
	if traceID(tp) != got.TraceID || traceID(tp) == traceID(traceparent) {
		t.Errorf("stored traceparent: got %q, want the api's trace %s, not the caller's", tp, got.TraceID)
	}
	if len(got.TraceID) != 32 || res.Header.Get("X-Trace-Id") != got.TraceID {
		t.Errorf("trace id: got body %q header %q, want the same trace id", got.TraceID, res.Header.Get("X-Trace-Id"))
	}
	// The relay puts it on the stream.
	rdb := r.Client()
	waitFor(t, "the message on the stream", func() bool {
		msgs, _ := rdb.XRange(context.Background(), api.stream, "-", "+").Result()
		for _, m := range msgs {
			tp, _ := m.Values["traceparent"].(string)
			if m.Values["id"] == got.ID && traceID(tp) == got.TraceID {
				return true
			}
		}
		return false
	})

	res, body = api.get(t, api.URL+got.StatusURL)
	if res.StatusCode != 200 {
		t.Fatalf("status page: got %d, want 200 (%s)", res.StatusCode, body)
	}
	st := decodeBody[statusResponse](t, body)
	if st.ID != got.ID || st.Status != "queued" || st.Attempts != 0 || st.CreatedAt.IsZero() {
		t.Errorf("status: got %+v, want the queued message", st)
	}
}

func TestCreateMessageAcceptsFormWithHTMLPage(t *testing.T) {
	api := startAPI(t, testenv.NewDatabase(t), testenv.StartRedis(t).Addr)
	v := url.Values{"assunto": {`<img src=x onerror=alert(1)>`}, "mensagem": {"oi & tchau"}}
	res, body := api.post(t, "/api", "application/x-www-form-urlencoded", v.Encode())
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("status: got %d, want 202 (body %s)", res.StatusCode, body)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("content type: got %q, want text/html", ct)
	}
	if strings.Contains(body, "<img") || !strings.Contains(body, "&lt;img src=x onerror=alert(1)&gt;") {
		t.Errorf("page must show the subject escaped:\n%s", body)
	}
	loc := res.Header.Get("Location")
	if !strings.Contains(body, `href="`+loc+`"`) {
		t.Errorf("page must link to the status %q:\n%s", loc, body)
	}
	// A browser following the link gets a page too.
	res, body = api.get(t, api.URL+loc, "Accept", "text/html")
	if res.StatusCode != 200 || !strings.Contains(body, "na fila") {
		t.Errorf("status page: got %d\n%s", res.StatusCode, body)
	}
	if n := api.countRows(t); n != 1 {
		t.Errorf("rows: got %d, want 1", n)
	}
}

func TestGetMessageUnknown(t *testing.T) {
	api := startAPI(t, testenv.NewDatabase(t), testenv.StartRedis(t).Addr)
	for _, id := range []string{"0193a1b2-0000-7000-8000-000000000000", "not-a-uuid", "1%27%20OR%201=1"} {
		res, body := api.get(t, api.URL+"/api/messages/"+id, "Accept", "application/json")
		if res.StatusCode != 404 || !strings.Contains(body, `"message not found"`) {
			t.Errorf("GET %s: got %d %s, want 404 message not found", id, res.StatusCode, body)
		}
	}
	// A path that names no message says so, not "message not found".
	for _, path := range []string{"/api", "/api/nope", "/api/messages"} {
		res, body := api.get(t, api.URL+path, "Accept", "application/json")
		if res.StatusCode != 404 || !strings.Contains(body, `{"error":"not found"}`) {
			t.Errorf("GET %s: got %d %s, want 404 not found", path, res.StatusCode, body)
		}
	}
}

func TestCrossSitePostIsRejected(t *testing.T) {
	api := startAPI(t, testenv.NewDatabase(t), testenv.StartRedis(t).Addr)
	body := "assunto=oi&mensagem=ola"
	for _, h := range [][]string{
		{"Sec-Fetch-Site", "cross-site"},
		{"Origin", "http://evil.example"},
	} {
		res, _ := api.post(t, "/api", "application/x-www-form-urlencoded", body, h...)
		if res.StatusCode != http.StatusForbidden {
			t.Errorf("%s: got %d, want 403", h, res.StatusCode)
		}
	}
	// Same-origin posts pass.
	res, _ := api.post(t, "/api", "application/x-www-form-urlencoded", body,
		"Sec-Fetch-Site", "same-origin", "Accept", "application/json")
	if res.StatusCode != http.StatusAccepted {
		t.Errorf("same-origin: got %d, want 202", res.StatusCode)
	}
	if n := api.countRows(t); n != 1 {
		t.Errorf("rows: got %d, want 1 (only the same-origin post)", n)
	}
}

func TestHealth(t *testing.T) {
	api := startAPI(t, testenv.NewDatabase(t), testenv.StartRedis(t).Addr)
	for _, u := range []string{api.Internal + "/healthz", api.Internal + "/readyz"} {
		if res, body := api.get(t, u); res.StatusCode != 200 {
			t.Errorf("GET %s: got %d, want 200 (%s)", u, res.StatusCode, body)
		}
	}
	// Health and readiness are the internal port's: the public one, which
	// nginx proxies, does not know them.
	for _, u := range []string{api.URL + "/healthz", api.URL + "/readyz"} {
		if res, body := api.get(t, u); res.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: got %d, want 404 (%s)", u, res.StatusCode, body)
		}
	}
	if err := run(context.Background(), []string{"api", "healthcheck"},
		testenv.Env(map[string]string{"INTERNAL_ADDR": strings.TrimPrefix(api.Internal, "http://")}), nil); err != nil {
		t.Errorf("healthcheck: got %v, want nil", err)
	}
}

// An unreachable database gets a 503 that says so, nothing hangs, and the
// api recovers on its own when the database is back.
func TestPostgresDownAnswers503(t *testing.T) {
	pg := testenv.StartPostgres(t)
	api := startAPI(t, pg.Config, testenv.StartRedis(t).Addr)
	// Warm the pool, so the stop also breaks live connections.
	if res, body := api.post(t, "/api/messages", "application/json", jsonBody("a", "b")); res.StatusCode != http.StatusAccepted {
		t.Fatalf("before the stop: got %d (%s)", res.StatusCode, body)
	}
	pg.Stop()
	start := time.Now()
	res, body := api.post(t, "/api/messages", "application/json", jsonBody("a", "b"))
	t.Logf("503 after %s", time.Since(start))
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status: got %d, want 503 (%s)", res.StatusCode, body)
	}
	if res.Header.Get("Retry-After") == "" {
		t.Errorf("Retry-After: got none, want a value")
	}
	if e := decodeBody[errorResponse](t, body); !strings.Contains(e.Error, "unavailable") {
		t.Errorf("error: got %q, want it to say the store is unavailable", e.Error)
	}
	if res, body := api.get(t, api.Internal+"/readyz"); res.StatusCode != 503 || body != "postgres: unavailable\n" {
		t.Errorf("readyz while down: got %d %q, want 503 %q (the driver's error only in the log)", res.StatusCode, body, "postgres: unavailable\n")
	}

	pg.Start()
	waitFor(t, "the api to accept again", func() bool {
		res, _ := api.post(t, "/api/messages", "application/json", jsonBody("a", "b"))
		return res.StatusCode == http.StatusAccepted
	})
	if n := api.countRows(t); n != 2 {
		t.Errorf("rows: got %d, want 2", n)
	}
}

// With Redis down, messages are still accepted (committed in Postgres) and
// reach the stream once Redis is back.
func TestRedisDownStillAccepts(t *testing.T) {
	r := testenv.StartRedis(t)
	api := startAPI(t, testenv.NewDatabase(t), r.Addr)
	r.Stop()
	var ids []string
	for range 3 {
		res, body := api.post(t, "/api/messages", "application/json", jsonBody("a", "b"))
		if res.StatusCode != http.StatusAccepted {
			t.Fatalf("status with Redis down: got %d, want 202 (%s)", res.StatusCode, body)
		}
		ids = append(ids, decodeBody[acceptedResponse](t, body).ID)
	}
	r.Start()
	rdb := r.Client()
	waitFor(t, "every message on the stream", func() bool {
		msgs, _ := rdb.XRange(context.Background(), api.stream, "-", "+").Result()
		seen := map[any]bool{}
		for _, m := range msgs {
			seen[m.Values["id"]] = true
		}
		for _, id := range ids {
			if !seen[id] {
				return false
			}
		}
		return true
	})

}

// traceID is the trace-id field of a W3C traceparent.
func traceID(traceparent string) string {
	parts := strings.Split(traceparent, "-")
	if len(parts) != 4 {
		return ""
	}
	return parts[1]
}

// The public status view (JSON and the HTML page) says what kind of
// failure a delivery met, never the relay's reply: that names internal
// hosts and addresses. The reply stays in Postgres.
func TestStatusHidesRelayReply(t *testing.T) {
	api := startAPI(t, testenv.NewDatabase(t), testenv.StartRedis(t).Addr)
	const reply = "451 4.4.1 <relay-7.interno.example [10.20.30.40]>: mailbox of diretoria@interno.example busy"
	tests := []struct {
		status   string
		set      string
		wantKind string
		wantText string // on the HTML page
		wantNext bool
	}{
		{"failed", "status = 'failed', next_attempt_at = now() + interval '5 minutes'", "temporary", "falha temporária; próxima tentativa em", true},
		{"dead", "status = 'dead', next_attempt_at = NULL", "permanent", "falha permanente", false},
		{"queued", "status = 'queued', next_attempt_at = NULL", "", "", false}, // released or reprocessed: on its way again
	}
	for _, tt := range tests {
		t.Run(tt.status, func(t *testing.T) {
			res, body := api.post(t, "/api/messages", "application/json", jsonBody("a", "b"), "Accept", "application/json")
			if res.StatusCode != http.StatusAccepted {
				t.Fatalf("post: got %d (%s)", res.StatusCode, body)
			}
			id := decodeBody[acceptedResponse](t, body).ID
			api.exec(t, "UPDATE emails SET "+tt.set+", attempts = 1, last_error = $2, published_at = now() WHERE id = $1", id, reply)

			res, body = api.get(t, api.URL+statusURL(id))
			if res.StatusCode != 200 {
				t.Fatalf("status: got %d (%s)", res.StatusCode, body)
			}
			st := decodeBody[statusResponse](t, body)
			switch {
			case tt.wantKind == "" && st.Failure != nil:
				t.Errorf("failure: got %+v, want null", st.Failure)
			case tt.wantKind != "" && (st.Failure == nil || st.Failure.Kind != tt.wantKind):
				t.Errorf("failure: got %+v, want kind %s", st.Failure, tt.wantKind)
			case tt.wantKind != "" && (st.Failure.NextAttemptAt != nil) != tt.wantNext:
				t.Errorf("failure next_attempt_at: got %v, want set %v", st.Failure.NextAttemptAt, tt.wantNext)
			}
			res, page := api.get(t, api.URL+statusURL(id), "Accept", "text/html")
			if res.StatusCode != 200 || !strings.Contains(page, tt.wantText) {
				t.Errorf("page: got %d, want it to say %q:\n%s", res.StatusCode, tt.wantText, page)
			}
			for _, answer := range []string{body, page} {
				for _, secret := range []string{"10.20.30.40", "interno.example", "4.4.1", "last_error"} {
					if strings.Contains(answer, secret) {
						t.Errorf("public answer holds %q:\n%s", secret, answer)
					}
				}
			}
			var stored string
			api.queryRow(t, "SELECT last_error FROM emails WHERE id = $1", []any{id}, &stored)
			if stored != reply {
				t.Errorf("last_error in Postgres: got %q, want the reply", stored)
			}
		})
	}
}

// A multipart form (curl -F, enctype="multipart/form-data") gets the same
// answers as the urlencoded one: the HTML page by default, JSON on
// request; its text decoded from the declared charset; a file refused.
func TestCreateMessageAcceptsMultipart(t *testing.T) {
	api := startAPI(t, testenv.NewDatabase(t), testenv.StartRedis(t).Addr)
	ct, body := multipartBody(t, part{name: "assunto", value: "Caf\xe9 <b>"}, part{name: "mensagem", value: "ol\xe1\r\nmundo"},
		part{name: "_charset_", value: "ISO-8859-1"}, part{name: "enviar", value: "Enviar !"})
	res, page := api.post(t, "/api", ct, body)
	if res.StatusCode != http.StatusAccepted || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("got %d %s, want 202 with the HTML page:\n%s", res.StatusCode, res.Header.Get("Content-Type"), page)
	}
	if !strings.Contains(page, "Café &lt;b&gt;") {
		t.Errorf("page must show the decoded subject, escaped:\n%s", page)
	}
	id := strings.TrimPrefix(res.Header.Get("Location"), "/api/messages/")
	if a, m, _, _ := api.row(t, id); a != "Café <b>" || m != "olá\nmundo" {
		t.Errorf("stored: got %q %q, want the text decoded from windows-1252", a, m)
	}

	ct, body = multipartBody(t, part{name: "assunto", value: "json"}, part{name: "mensagem", value: "b"})
	res, out := api.post(t, "/api/messages", ct, body, "Accept", "application/json")
	if res.StatusCode != http.StatusAccepted || decodeBody[acceptedResponse](t, out).Status != "queued" {
		t.Errorf("JSON answer: got %d %s, want 202 queued", res.StatusCode, out)
	}

	// Refusals name what is wrong, in JSON and on the pt-BR page.
	refusals := []struct {
		name       string
		parts      []part
		status     int
		json, html string
	}{
		{"file part", []part{{name: "assunto", value: "a"}, {name: "mensagem", value: "b"},
			{name: "foto", value: "GIF89a", header: map[string]string{"Content-Disposition": `form-data; name="foto"; filename="a.gif"`, "Content-Type": "image/gif"}}},
			415, `multipart part \"foto\" is a file`, `O campo &#34;foto&#34; é um arquivo`},
		{"unknown charset", []part{{name: "assunto", value: "a"}, {name: "mensagem", value: "b"}, {name: "_charset_", value: "x-klingon"}},
			415, `charset \"x-klingon\" is not supported`, `A codificação de caracteres &#34;x-klingon&#34; não é suportada`},
		{"too long in emoji", []part{{name: "assunto", value: "a"}, {name: "mensagem", value: strings.Repeat("🙂", 251)}},
			400, `"mensagem":"too_long"`, "Mensagem: texto longo demais"},
		{"header injection", []part{{name: "assunto", value: "a\r\nBcc: x@example.com"}, {name: "mensagem", value: "b"}},
			400, `"assunto":"control_chars"`, "Assunto: contém quebras de linha"},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			ct, body := multipartBody(t, tt.parts...)
			res, out := api.post(t, "/api/messages", ct, body, "Accept", "application/json")
			if res.StatusCode != tt.status || !strings.Contains(out, tt.json) {
				t.Errorf("JSON: got %d %s, want %d with %s", res.StatusCode, out, tt.status, tt.json)
			}
			res, out = api.post(t, "/api", ct, body)
			if res.StatusCode != tt.status || !strings.Contains(out, tt.html) {
				t.Errorf("HTML: got %d, want %d with %q:\n%s", res.StatusCode, tt.status, tt.html, out)
			}
		})
	}
	if n := api.countRows(t); n != 2 {
		t.Errorf("rows: got %d, want 2 (the two accepted)", n)
	}
}
