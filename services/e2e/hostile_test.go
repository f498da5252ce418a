package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/http"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// Hostile input through the real nginx and api: whatever a visitor sends,
// HTML answers escape it, SQL stays data, mail headers stay the
// configuration's, and malformed or oversized requests are refused at the
// right layer with nothing stored.
func TestHostileInput(t *testing.T) {
	s := startStack(t, stackOptions{})
	t.Run("XSS is escaped in every HTML answer", func(t *testing.T) { testXSS(t, s) })
	t.Run("SQL injection is stored verbatim", func(t *testing.T) { testSQLInjection(t, s) })
	t.Run("header injection in the subject is rejected", func(t *testing.T) { testHeaderInjection(t, s) })
	t.Run("invalid UTF-8 and NUL bytes are rejected", func(t *testing.T) { testInvalidBytes(t, s) })
	t.Run("1 MiB body is refused by nginx", func(t *testing.T) { testHugeBody(t, s) })
	t.Run("wrong content types are refused", func(t *testing.T) { testContentTypes(t, s) })
	t.Run("415 pages escape the charset label and the part name", func(t *testing.T) { testEchoed415(t, s) })
	t.Run("cross-site posts are refused", func(t *testing.T) { testCrossSite(t, s) })
	t.Run("mail arrives exactly as submitted", func(t *testing.T) { testMailAsSubmitted(t, s) })
}

// The nginx rate limit and the servers' header timeouts, on a stack with
// the rate limit on (as in compose).
func TestRateLimitAndSlowClients(t *testing.T) {
	s := startStack(t, stackOptions{extraEnv: map[string]string{"RATE_LIMIT": "1"}})
	t.Run("burst past the rate limit", func(t *testing.T) { testRateLimit(t, s) })
	t.Run("slow headers", func(t *testing.T) {
		// nginx: client_header_timeout (10s); api: ReadHeaderTimeout (5s).
		t.Run("nginx", func(t *testing.T) {
			t.Parallel()
			testSlowHeaders(t, strings.TrimPrefix(s.URL, "http://"))
		})
		t.Run("api", func(t *testing.T) {
			t.Parallel()
			testSlowHeaders(t, s.envVar("API_HTTP_ADDR"))
		})
	})
}

// The page is static and its script never parses server text as HTML.
func TestPageWritesServerTextAsText(t *testing.T) {
	root := repoRoot(t)
	js, err := os.ReadFile(filepath.Join(root, "web", "app.js"))
	if err != nil {
		t.Fatal(err)
	}
	// Comments may name the sinks they avoid; code may not use them.
	code := regexp.MustCompile(`(?m)^\s*//.*$`).ReplaceAllString(string(js), "")
	for _, sink := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write",
		"eval(", "new Function", "createContextualFragment", "DOMParser", "srcdoc"} {
		if strings.Contains(code, sink) {
			t.Errorf("web/app.js uses %s: write server text with textContent", sink)
		}
	}
	if !strings.Contains(code, ".textContent") {
		t.Errorf("web/app.js: got no textContent, want server text written with it")
	}
	page, err := os.ReadFile(filepath.Join(root, "web", "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	// Only external scripts (the CSP allows no inline script anyway).
	for _, m := range regexp.MustCompile(`(?is)<script([^>]*)>(.*?)</script>`).FindAllStringSubmatch(string(page), -1) {
		if !strings.Contains(m[1], "src=") || strings.TrimSpace(m[2]) != "" {
			t.Errorf("web/index.html: inline script %q, want only <script src=…>", m[0])
		}
	}
	if regexp.MustCompile(`(?i)\son[a-z]+\s*=`).Match(page) {
		t.Errorf("web/index.html: got an inline event handler attribute, want none")
	}
}

const (
	jsonType = "application/json"
	formType = "application/x-www-form-urlencoded"
)

var xssPayloads = []string{
	`<script>alert(1)</script>`,
	`"><img src=x onerror=alert(1)>`,
	`javascript:alert(document.cookie)`,
	`</textarea><script>alert(1)</script>`,
	`</dd></dl><svg/onload=alert(1)>`,
	`' onmouseover='alert(1)' x='`,
	`" autofocus onfocus="alert(1)`,
	`&lt;script&gt;alert(1)&lt;/script&gt;`, // already escaped: must be escaped again
	`{{.}} ${7*7} <!-- --> <![CDATA[x]]>`,
	"\u202Egnp.exe\u202C <b>bidi</b>", // right-to-left override
	"\u202Etxt.exe",
}

// htmlText is s as html/template writes it in a text context.
func htmlText(s string) string {
	var b strings.Builder
	template.Must(template.New("").Parse(`{{.}}`)).Execute(&b, s)
	return b.String()
}

// checkHTML asserts body is an HTML answer in which payload appears only
// escaped: the raw form never (when escaping changes it), the escaped
// form when shown is true, and no markup a payload could bring.
func checkHTML(t *testing.T, what string, res *http.Response, body, payload string, shown bool) {
	t.Helper()
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("%s: Content-Type %q, want text/html", what, ct)
	}
	if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("%s: CSP %q, want default-src 'self'", what, csp)
	}
	if res.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("%s: X-Content-Type-Options %q, want nosniff", what, res.Header.Get("X-Content-Type-Options"))
	}
	escaped := htmlText(payload)
	if escaped != payload && strings.Contains(body, payload) {
		t.Errorf("%s: the payload %q appears unescaped:\n%s", what, payload, body)
	}
	if shown && !strings.Contains(body, escaped) {
		t.Errorf("%s: want the escaped payload %q in:\n%s", what, escaped, body)
	}
	lower := strings.ToLower(body)
	for _, tag := range []string{"<script", "<img", "<svg", "<b>", "<textarea", "<![cdata"} {
		if strings.Contains(lower, tag) {
			t.Errorf("%s: got markup %q (payload %q):\n%s", what, tag, payload, body)
		}
	}
}

func testXSS(t *testing.T, s *stack) {
	before := s.countRows()
	accepted := 0
	for _, p := range xssPayloads {
		t.Run(p, func(t *testing.T) {
			// A plain form post (browser without JavaScript): the HTML
			// confirmation page shows the subject.
			form := url.Values{"assunto": {p}, "mensagem": {p}}
			res, body := s.request("POST", "/api", formType, form.Encode(), "Origin", s.URL)
			if res.StatusCode != http.StatusAccepted {
				t.Fatalf("form post: got %d, want 202\n%s", res.StatusCode, body)
			}
			accepted++
			checkHTML(t, "confirmation page", res, body, p, true)
			loc := res.Header.Get("Location")
			id := strings.TrimPrefix(loc, "/api/messages/")

			// Stored exactly as typed: escaping is the output's business.
			var assunto, mensagem string
			s.queryRow("SELECT assunto, mensagem FROM emails WHERE id = $1", []any{id}, &assunto, &mensagem)
			if assunto != p || mensagem != p {
				t.Errorf("stored (%q, %q), want the payload verbatim", assunto, mensagem)
			}

			// The HTML status page a browser gets from the link.
			res, body = s.request("GET", loc, "", "", "Accept", "text/html,application/xhtml+xml")
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status page: got %d, want 200\n%s", res.StatusCode, body)
			}
			checkHTML(t, "status page", res, body, p, true)

			// The JSON answer is JSON, never sniffed as HTML.
			res, body = s.request("GET", loc, "", "", "Accept", "application/json")
			if ct := res.Header.Get("Content-Type"); res.StatusCode != 200 || !strings.HasPrefix(ct, "application/json") ||
				res.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("JSON status: got %d %q nosniff=%q, want 200 application/json nosniff",
					res.StatusCode, ct, res.Header.Get("X-Content-Type-Options"))
			}

			// The HTML error page (mensagem too long): names fields, echoes nothing.
			form = url.Values{"assunto": {p}, "mensagem": {p + strings.Repeat("x", 251)}}
			res, body = s.request("POST", "/api", formType, form.Encode(), "Origin", s.URL)
			if res.StatusCode != http.StatusBadRequest {
				t.Fatalf("invalid form post: got %d, want 400\n%s", res.StatusCode, body)
			}
			checkHTML(t, "error page", res, body, p, false)
			if strings.Contains(body, htmlText(p)) || !strings.Contains(body, "Mensagem:") {
				t.Errorf("error page: want the field named, not the input echoed:\n%s", body)
			}

			// A payload in the path: the 404 page.
			res, body = s.request("GET", "/api/messages/"+url.PathEscape(p), "", "", "Accept", "text/html")
			if res.StatusCode != http.StatusNotFound {
				t.Fatalf("payload as id: got %d, want 404\n%s", res.StatusCode, body)
			}
			checkHTML(t, "404 page", res, body, p, false)
		})
	}
	if got, want := s.countRows()-before, accepted; got != want {
		t.Errorf("rows stored: got %d, want %d (one per accepted post)", got, want)
	}

	// The page itself is the static file: no visitor's data ever reaches it.
	res, body := s.request("GET", "/", "", "")
	want, err := os.ReadFile(filepath.Join(repoRoot(t), "web", "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 || body != string(want) {
		t.Errorf("GET /: got %d and %d bytes, want 200 and web/index.html unchanged", res.StatusCode, len(body))
	}
}

func testSQLInjection(t *testing.T, s *stack) {
	payloads := []string{
		`'; DROP TABLE emails; --`,
		`Robert'); DROP TABLE emails;--`,
		`' OR '1'='1`,
		`' OR 1=1; DELETE FROM emails WHERE ''='`,
		`1); TRUNCATE emails CASCADE; --`,
		`$1 $$; DROP TABLE emails; $$ \x00 E'\\'`,
		`"emails"; UPDATE emails SET status = 'sent'; --`,
		`'); SELECT pg_sleep(5); --`,
		`%' AND 1=0 UNION SELECT id, id FROM emails --`,
	}
	before := s.countRows()
	var ids []string
	for _, p := range payloads {
		t.Run(p, func(t *testing.T) {
			for _, submit := range []func() string{
				func() string { return s.submitJSON(p, p+"\ncorpo") },
				func() string {
					form := url.Values{"assunto": {p}, "mensagem": {p + "\ncorpo"}}
					res, body := s.request("POST", "/api/messages", formType, form.Encode(), "Accept", "application/json")
					if res.StatusCode != http.StatusAccepted {
						t.Fatalf("form post: got %d, want 202 (%s)", res.StatusCode, body)
					}
					var out struct{ ID string }
					json.Unmarshal([]byte(body), &out)
					return out.ID
				},
			} {
				id := submit()
				ids = append(ids, id)
				var assunto, mensagem string
				s.queryRow("SELECT assunto, mensagem FROM emails WHERE id = $1", []any{id}, &assunto, &mensagem)
				if assunto != p || mensagem != p+"\ncorpo" {
					t.Errorf("stored (%q, %q), want (%q, %q)", assunto, mensagem, p, p+"\ncorpo")
				}
			}
		})
	}
	var table *string
	s.queryRow("SELECT to_regclass('public.emails')::text", nil, &table)
	if table == nil {
		t.Fatal("the emails table is gone")
	}
	if got, want := s.countRows()-before, len(ids); got != want {
		t.Errorf("rows: got %d more, want %d", got, want)
	}
	// The statuses were not rewritten, and each message goes on its way.
	for _, id := range ids {
		s.waitStatus(id, "sent")
	}
}

// errorBody is the JSON error answer.
type errorBody struct {
	Error  string
	Fields map[string]string
	Codes  map[string]string
}

// postRejected posts and expects status with JSON codes exactly want, and
// that nothing was stored.
func (s *stack) postRejected(t *testing.T, contentType, body string, status int, want map[string]string) errorBody {
	t.Helper()
	before := s.countRows()
	res, text := s.request("POST", "/api/messages", contentType, body, "Accept", "application/json", "Origin", s.URL)
	var e errorBody
	if res.StatusCode != status {
		t.Fatalf("got %d, want %d (%s)", res.StatusCode, status, text)
	}
	if err := json.Unmarshal([]byte(text), &e); err != nil {
		t.Fatalf("error body %q: %v", text, err)
	}
	if want != nil {
		if fmt.Sprint(e.Codes) != fmt.Sprint(want) {
			t.Errorf("codes: got %v, want %v (%s)", e.Codes, want, text)
		}
		for field := range want {
			if !strings.Contains(e.Fields[field], field) {
				t.Errorf("fields[%s]: got %q, want a sentence naming %s", field, e.Fields[field], field)
			}
		}
	}
	if n := s.countRows() - before; n != 0 {
		t.Errorf("rows stored: got %d, want 0", n)
	}
	return e
}

func jsonBody(assunto, mensagem string) string {
	b, _ := json.Marshal(map[string]string{"assunto": assunto, "mensagem": mensagem})
	return string(b)
}

func testHeaderInjection(t *testing.T, s *stack) {
	subjects := []string{
		"oi\r\nBcc: evil@example.com",
		"oi\nBcc: evil@example.com",
		"oi\rBcc: evil@example.com",
		"oi\r\nTo: evil@example.com\r\n\r\ncorpo falso",
		"oi\r\n Bcc: evil@example.com",  // folded continuation
		"oi\u0085Bcc: evil@example.com", // NEL
		"oi\u2028Bcc: evil@example.com", // line separator
		"oi\u2029Bcc: evil@example.com", // paragraph separator
		"oi\tBcc: evil@example.com",
		"oi\x0bBcc: evil@example.com",
		"oi\x00Bcc: evil@example.com",
	}
	for _, subj := range subjects {
		t.Run(fmt.Sprintf("%q", subj), func(t *testing.T) {
			want := map[string]string{"assunto": "control_chars"}
			// JSON escapes (\r\n, \u000d...) and percent-encoding both
			// decode to the control characters themselves.
			s.postRejected(t, jsonType, jsonBody(subj, "x"), 400, want)
			s.postRejected(t, formType, url.Values{"assunto": {subj}, "mensagem": {"x"}}.Encode(), 400, want)
			e := s.postRejected(t, jsonType, `{"assunto":"oi\u000d\u000aBcc: evil@example.com","mensagem":"x"}`, 400, want)
			if !strings.Contains(e.Fields["assunto"], "line breaks") {
				t.Errorf("fields[assunto]: got %q, want it to say line breaks", e.Fields["assunto"])
			}
		})
	}
	// The raw percent-encoded form, as an attacker would type it.
	s.postRejected(t, formType, "assunto=oi%0D%0ABcc:%20evil@example.com&mensagem=x", 400,
		map[string]string{"assunto": "control_chars"})
	s.postRejected(t, formType, "assunto=oi%0ABcc:%20evil@example.com&mensagem=x", 400,
		map[string]string{"assunto": "control_chars"})
}

func testInvalidBytes(t *testing.T, s *stack) {
	for _, field := range []string{"assunto", "mensagem"} {
		other := map[string]string{"assunto": "mensagem", "mensagem": "assunto"}[field]
		t.Run(field, func(t *testing.T) {
			cases := []struct {
				name, contentType, body, code string
			}{
				{"form invalid UTF-8", formType, field + "=a%FF%FEb&" + other + "=ok", "invalid_utf8"},
				{"form truncated sequence", formType, field + "=a%C3&" + other + "=ok", "invalid_utf8"},
				{"form overlong encoding", formType, field + "=%C0%BCscript&" + other + "=ok", "invalid_utf8"},
				{"form NUL", formType, field + "=a%00b&" + other + "=ok", "control_chars"},
				{"JSON invalid UTF-8", jsonType, `{"` + field + `":"a` + "\xff\xfe" + `b","` + other + `":"ok"}`, "invalid_utf8"},
				{"JSON surrogate bytes", jsonType, `{"` + field + `":"a` + "\xed\xa0\x80" + `b","` + other + `":"ok"}`, "invalid_utf8"},
				{"JSON NUL escape", jsonType, `{"` + field + `":"a\u0000b","` + other + `":"ok"}`, "control_chars"},
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					s.postRejected(t, c.contentType, c.body, 400, map[string]string{field: c.code})
				})
			}
			// A raw NUL byte inside a JSON string is not JSON at all.
			t.Run("JSON raw NUL", func(t *testing.T) {
				e := s.postRejected(t, jsonType, `{"`+field+`":"a`+"\x00"+`b","`+other+`":"ok"}`, 400, nil)
				if !strings.Contains(e.Error, "malformed JSON") {
					t.Errorf("error: got %q, want malformed JSON", e.Error)
				}
			})
			// A browser's form post gets the HTML page naming the field.
			t.Run("HTML error page", func(t *testing.T) {
				res, body := s.request("POST", "/api", formType, field+"=a%FFb&"+other+"=ok", "Origin", s.URL)
				label := map[string]string{"assunto": "Assunto:", "mensagem": "Mensagem:"}
				if res.StatusCode != 400 || !strings.Contains(body, label[field]) || strings.Contains(body, label[other]) {
					t.Errorf("got %d, want 400 naming %s only:\n%s", res.StatusCode, field, body)
				}
			})
		})
	}
}

func testHugeBody(t *testing.T, s *stack) {
	before := s.countRows()
	big := "assunto=a&mensagem=" + strings.Repeat("b", 1<<20)
	check := func(t *testing.T, res *http.Response, body string) {
		t.Helper()
		// nginx's own answer, in the api's JSON shape (the api sets
		// X-Trace-Id on everything it answers; checkEdgeError wants none).
		checkEdgeError(t, "1 MiB body", res, body, http.StatusRequestEntityTooLarge, "json")
		// The access log says nginx did not go upstream.
		if rid := res.Header.Get("X-Request-Id"); rid != "" {
			if line := s.accessLogLine(rid); line == nil {
				t.Errorf("access log: no line for request %s", rid)
			} else if line["upstream_addr"] != "" || line["status"] != float64(413) {
				t.Errorf("access log: got %v, want status 413 and no upstream", line)
			}
		} else {
			t.Errorf("X-Request-Id: got none, want nginx's request id")
		}
	}
	t.Run("with Content-Length", func(t *testing.T) {
		res, body := s.request("POST", "/api/messages", formType, big, "Accept", "application/json")
		check(t, res, body)
	})
	t.Run("chunked", func(t *testing.T) {
		// io.MultiReader hides the length: the client sends it chunked.
		req, _ := http.NewRequest("POST", s.URL+"/api/messages", io.MultiReader(strings.NewReader(big)))
		req.Header.Set("Content-Type", formType)
		req.Header.Set("Accept", "application/json")
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		check(t, res, string(b))
	})
	if n := s.countRows() - before; n != 0 {
		t.Errorf("rows stored: got %d, want 0", n)
	}
}

// accessLogLine finds nginx's JSON access log line of a request id.
func (s *stack) accessLogLine(requestID string) map[string]any {
	var line map[string]any
	for range 50 { // nginx writes the line after the answer
		f, err := os.Open(filepath.Join(s.dir, "nginx", "access.log"))
		if err != nil {
			s.t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if bytes.Contains(sc.Bytes(), []byte(requestID)) {
				json.Unmarshal(sc.Bytes(), &line)
			}
		}
		f.Close()
		if line != nil {
			return line
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

func testContentTypes(t *testing.T, s *stack) {
	var mp bytes.Buffer
	w := multipart.NewWriter(&mp)
	w.WriteField("assunto", "oi")
	w.WriteField("mensagem", "corpo")
	w.Close()
	cases := []struct{ name, contentType, body string }{
		{"text/plain", "text/plain", "assunto=oi&mensagem=corpo"},
		{"text/plain charset", "text/plain; charset=utf-8", `{"assunto":"oi","mensagem":"corpo"}`},
		{"multipart/mixed", "multipart/mixed; boundary=" + w.Boundary(), mp.String()},
		{"application/xml", "application/xml", `<m><assunto>oi</assunto><mensagem>corpo</mensagem></m>`},
		{"text/html", "text/html", `<p>oi</p>`},
		{"none", "", "assunto=oi&mensagem=corpo"},
		{"malformed", "application/json; charset", `{"assunto":"oi","mensagem":"corpo"}`},
		{"lookalike", "application/jsonx", `{"assunto":"oi","mensagem":"corpo"}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := s.postRejected(t, c.contentType, c.body, http.StatusUnsupportedMediaType, nil)
			if !strings.Contains(e.Error, "Content-Type") {
				t.Errorf("error: got %q, want it to name Content-Type", e.Error)
			}
			// A browser gets the HTML page (a JSON client, one whose
			// media type is JSON, still gets JSON).
			res, body := s.request("POST", "/api", c.contentType, c.body, "Origin", s.URL)
			wantType := "text/html"
			if mt, _, _ := mime.ParseMediaType(c.contentType); mt == jsonType {
				wantType = jsonType
			}
			if res.StatusCode != http.StatusUnsupportedMediaType || !strings.HasPrefix(res.Header.Get("Content-Type"), wantType) {
				t.Errorf("no Accept: got %d %q, want 415 %s\n%s", res.StatusCode, res.Header.Get("Content-Type"), wantType, body)
			}
		})
	}
}

// The 415 pages name what they refuse, a charset label or a multipart
// part's name, both the client's text: shown as a JSON string
// ("\u003c" for "<"), which html/template escapes again, never as markup.
func testEchoed415(t *testing.T, s *stack) {
	before := s.countRows()
	for _, p := range xssPayloads {
		t.Run(p, func(t *testing.T) {
			label := url.Values{"assunto": {"oi"}, "mensagem": {"corpo"}, "_charset_": {p}}.Encode()
			fileCT, fileBody := multipartForm(t, formPart{name: "assunto", value: "oi"}, formPart{name: "mensagem", value: "corpo"},
				formPart{name: p, value: "GIF89a", filename: "a.gif", contentType: "image/gif"})
			fieldCT, fieldBody := multipartForm(t, formPart{name: "assunto", value: "oi"}, formPart{name: "mensagem", value: "corpo"},
				formPart{name: "_charset_", value: p})
			for _, c := range []struct{ what, contentType, body string }{
				{"Content-Type charset", mime.FormatMediaType(formType, map[string]string{"charset": p}), "assunto=oi&mensagem=corpo"},
				{"_charset_ field", formType, label},
				{"multipart _charset_ part", fieldCT, fieldBody},
				{"multipart file part's name", fileCT, fileBody},
			} {
				res, body := s.request("POST", "/api", c.contentType, c.body, "Origin", s.URL)
				if res.StatusCode != http.StatusUnsupportedMediaType {
					t.Errorf("%s: got %d, want 415\n%s", c.what, res.StatusCode, body)
					continue
				}
				checkHTML(t, c.what, res, body, p, false)
				checkHTML(t, c.what, res, body, jsonString(p), true)
			}
		})
	}
	if n := s.countRows() - before; n != 0 {
		t.Errorf("rows stored: got %d, want 0", n)
	}
}

// jsonString is s as a JSON string, as the api quotes a client's text in
// its error messages.
func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func testCrossSite(t *testing.T, s *stack) {
	const body = "assunto=oi&mensagem=corpo"
	cases := []struct {
		name    string
		ctype   string
		headers []string
	}{
		{"Origin of another site", formType, []string{"Origin", "http://evil.example"}},
		{"Origin of another port", formType, []string{"Origin", "http://127.0.0.1:1"}},
		{"Origin null", formType, []string{"Origin", "null"}},
		{"Sec-Fetch-Site cross-site", formType, []string{"Sec-Fetch-Site", "cross-site"}},
		{"Sec-Fetch-Site same-site", formType, []string{"Sec-Fetch-Site", "same-site", "Origin", "http://www.evil.example"}},
		{"cross-site overrides a matching Origin", formType, []string{"Sec-Fetch-Site", "cross-site", "Origin", s.URL}},
		{"JSON from another site", jsonType, []string{"Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site"}},
		{"text/plain from another site", "text/plain", []string{"Origin", "http://evil.example"}},
	}
	before := s.countRows()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := body
			if c.ctype == jsonType {
				b = `{"assunto":"oi","mensagem":"corpo"}`
			}
			for _, path := range []string{"/api", "/api/messages"} {
				res, text := s.request("POST", path, c.ctype, b, c.headers...)
				if res.StatusCode != http.StatusForbidden {
					t.Fatalf("%s: got %d, want 403\n%s", path, res.StatusCode, text)
				}
				if c.ctype == formType && !strings.Contains(text, "outro site") {
					t.Errorf("%s: want the HTML page saying so, got:\n%s", path, text)
				}
			}
		})
	}
	if n := s.countRows() - before; n != 0 {
		t.Errorf("rows stored: got %d, want 0", n)
	}
	// Same-origin posts, and clients that send neither header, are accepted.
	for _, h := range [][]string{{"Origin", s.URL}, {"Sec-Fetch-Site", "same-origin", "Origin", s.URL}, {"Sec-Fetch-Site", "none"}, nil} {
		if res, text := s.request("POST", "/api", formType, body, h...); res.StatusCode != http.StatusAccepted {
			t.Errorf("same-origin %v: got %d, want 202\n%s", h, res.StatusCode, text)
		}
	}
}

func testMailAsSubmitted(t *testing.T, s *stack) {
	const mailTo = "contato@carteiro.test"
	cases := []struct{ assunto, mensagem string }{
		{`Olá "aspas" 'simples' <tag> & ção — 🙂📬 ✓`,
			"linha 1\nlinha 2 <b>\"x\"</b> 'y' & z 🙂\n\nBcc: evil@example.com\nTo: evil@example.com"},
		// A literal RFC 2047 word that decodes to a CRLF: text, not a header.
		{"=?UTF-8?Q?oi=0D=0ABcc:_evil@example.com?=", "=?UTF-8?B?QmNjOiBldmlsQGV4YW1wbGUuY29t?="},
		{"Bcc: evil@example.com", "To: evil@example.com\r\nCc: evil@example.com\r\n\r\nfim"},
		// 100 characters, many of them multi-byte: the encoder must fold
		// the subject into several encoded words without splitting one.
		{strings.Repeat("ção🙂", 25), "SMTP dot-stuffing:\n.\n..\n. \nfim"},
		{"=?=?= ?Q? =41 _ =", strings.Repeat("a=b ", 50) + "\n\tcom tab\n\u202Ebidi"},
	}
	for i, c := range cases {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			id := s.submitJSON(c.assunto, c.mensagem)
			s.waitStatus(id, "sent")
			m, n := s.mailByMessageID(s.messageID(id))
			if n != 1 {
				t.Fatalf("mails: got %d, want 1", n)
			}
			wantBody := strings.ReplaceAll(c.mensagem, "\r\n", "\n")
			if m.Subject != c.assunto {
				t.Errorf("Mailpit subject: got %q, want %q", m.Subject, c.assunto)
			}
			if got := strings.TrimSuffix(strings.ReplaceAll(m.Text, "\r\n", "\n"), "\n"); got != wantBody {
				t.Errorf("Mailpit text: got %q, want %q", got, wantBody)
			}

			raw := s.rawMail(m.ID)
			msg, err := mail.ReadMessage(bytes.NewReader(raw))
			if err != nil {
				t.Fatalf("parse: %v\n%s", err, raw)
			}
			h := msg.Header
			if to := h["To"]; len(to) != 1 {
				t.Errorf("To headers: got %q, want one", to)
			} else if addrs, err := mail.ParseAddressList(to[0]); err != nil || len(addrs) != 1 || addrs[0].Address != mailTo {
				t.Errorf("To: got %q, want exactly %s", to[0], mailTo)
			}
			for _, k := range []string{"Bcc", "Cc", "Reply-To", "Resent-To", "Resent-Bcc"} {
				if v, ok := h[k]; ok {
					t.Errorf("header %s: got %q, want none", k, v)
				}
			}
			if len(h["Subject"]) != 1 {
				t.Fatalf("Subject headers: got %q, want one", h["Subject"])
			}
			dec := new(mime.WordDecoder)
			if got, err := dec.DecodeHeader(h.Get("Subject")); err != nil || got != c.assunto {
				t.Errorf("Subject %q decodes to %q (%v), want %q", h.Get("Subject"), got, err, c.assunto)
			}
			mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
			if err != nil || mt != "text/plain" || !strings.EqualFold(params["charset"], "utf-8") {
				t.Errorf("Content-Type: got %q, want text/plain; charset=UTF-8", h.Get("Content-Type"))
			}
			var body io.Reader = msg.Body
			switch cte := strings.ToLower(h.Get("Content-Transfer-Encoding")); cte {
			case "quoted-printable":
				body = quotedprintable.NewReader(msg.Body)
			case "", "7bit", "8bit":
			default:
				t.Fatalf("Content-Transfer-Encoding %q: not decoded by this test", cte)
			}
			b, err := io.ReadAll(body)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSuffix(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n"); got != wantBody {
				t.Errorf("decoded body: got %q, want %q", got, wantBody)
			}
			// Exactly one message and one recipient on the envelope.
			var detail struct {
				To, Cc, Bcc []struct{ Address string }
			}
			s.mailpitJSON("/api/v1/message/"+m.ID, &detail)
			if len(detail.To) != 1 || detail.To[0].Address != mailTo || len(detail.Cc) != 0 || len(detail.Bcc) != 0 {
				t.Errorf("recipients: got to=%v cc=%v bcc=%v, want only %s", detail.To, detail.Cc, detail.Bcc, mailTo)
			}
		})
	}
	// Nobody else got anything: every mail in the inbox is for MAIL_TO.
	var list struct {
		Messages []struct {
			To, Cc, Bcc []struct{ Address string }
		}
	}
	s.mailpitJSON("/api/v1/messages?limit=1000", &list)
	for _, m := range list.Messages {
		if len(m.To) != 1 || m.To[0].Address != mailTo || len(m.Cc)+len(m.Bcc) != 0 {
			t.Errorf("inbox: a mail to %v cc %v bcc %v, want only %s", m.To, m.Cc, m.Bcc, mailTo)
		}
	}
}

// rawMail is a Mailpit message's source.
func (s *stack) rawMail(id string) []byte {
	s.t.Helper()
	res, err := client.Get(s.Mailpit + "/api/v1/message/" + id + "/raw")
	if err != nil {
		s.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		s.t.Fatalf("raw message %s: %d %s", id, res.StatusCode, b)
	}
	return b
}

func (s *stack) mailpitJSON(path string, v any) {
	s.t.Helper()
	res, err := client.Get(s.Mailpit + path)
	if err != nil {
		s.t.Fatal(err)
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(v); err != nil {
		s.t.Fatalf("Mailpit %s: %v", path, err)
	}
}

// envVar is the value a stack's processes got for name.
func (s *stack) envVar(name string) string {
	v := ""
	for _, kv := range s.env {
		if k, val, _ := strings.Cut(kv, "="); k == name {
			v = val
		}
	}
	if v == "" {
		s.t.Fatalf("stack environment has no %s", name)
	}
	return v
}

func testRateLimit(t *testing.T, s *stack) {
	// nginx: 10 r/s per client address, burst 20, nodelay; the excess gets
	// 429 from nginx without reaching the api.
	before := s.countRows()
	const n = 100
	codes := make([]int, n)
	answers := make([]struct {
		res  *http.Response
		body string
	}, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			// Half JSON clients, half browsers posting the form.
			req, _ := http.NewRequest("POST", s.URL+"/api/messages", strings.NewReader(jsonBody("rajada", fmt.Sprint(i))))
			req.Header.Set("Content-Type", jsonType)
			req.Header.Set("Accept", jsonType)
			if i%2 == 1 {
				req, _ = http.NewRequest("POST", s.URL+"/api", strings.NewReader(url.Values{"assunto": {"rajada"}, "mensagem": {fmt.Sprint(i)}}.Encode()))
				req.Header.Set("Content-Type", formType)
				req.Header.Set("Accept", "text/html")
			}
			req.Header.Set("Origin", s.URL)
			res, err := client.Do(req)
			if err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			codes[i] = res.StatusCode
			answers[i].res, answers[i].body = res, string(b)
		}()
	}
	close(start)
	wg.Wait()
	count := map[int]int{}
	for i, c := range codes {
		count[c]++
		if c == http.StatusTooManyRequests {
			// From nginx, in the format the client asked for, with
			// Retry-After (checkEdgeError).
			want := "json"
			if i%2 == 1 {
				want = "html"
			}
			checkEdgeError(t, fmt.Sprintf("request %d", i), answers[i].res, answers[i].body, c, want)
		}
	}
	t.Logf("%d concurrent posts: %v", n, count)
	if count[http.StatusTooManyRequests] == 0 {
		t.Errorf("429s: got none, want the burst limited (%v)", count)
	}
	if count[http.StatusAccepted] == 0 {
		t.Errorf("202s: got none, want the burst allowance accepted (%v)", count)
	}
	if count[http.StatusAccepted]+count[http.StatusTooManyRequests] != n {
		t.Errorf("statuses: got %v, want only 202 and 429", count)
	}
	if got := s.countRows() - before; got != count[http.StatusAccepted] {
		t.Errorf("rows: got %d, want %d (one per 202)", got, count[http.StatusAccepted])
	}
	// The bucket refills: after a pause a post is accepted again.
	var res *http.Response
	for range 50 {
		time.Sleep(200 * time.Millisecond)
		res, _ = s.request("POST", "/api/messages", jsonType, jsonBody("depois", "da rajada"), "Accept", jsonType)
		if res.StatusCode == http.StatusAccepted {
			return
		}
	}
	t.Errorf("after the burst: got %d, want 202 once the limit refills", res.StatusCode)
}

// testSlowHeaders opens a connection and sends a request's headers one line
// a second, never finishing them: the server must close the connection on
// its own (a header timeout bounds the whole header, not each read).
func testSlowHeaders(t *testing.T, addr string) {
	const neverClosed = 60 * time.Second // generous: only detects "never"
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	started := time.Now()
	if _, err := io.WriteString(conn, "POST /api/messages HTTP/1.1\r\nHost: "+addr+"\r\n"); err != nil {
		t.Fatal(err)
	}
	closed := make(chan []byte, 1)
	go func() {
		// Whatever the server says before closing; a silent close is
		// the expected answer.
		b, _ := io.ReadAll(conn)
		closed <- b
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	timeout := time.After(neverClosed)
	lines := 0
	for {
		select {
		case b := <-closed:
			t.Logf("%s closed the connection after %s and %d more header lines", addr, time.Since(started).Round(100*time.Millisecond), lines)
			if len(b) > 0 && !strings.HasPrefix(string(b), "HTTP/1.1 408") {
				t.Errorf("answer before closing: got %.200q, want none or 408", b)
			}
			if lines == 0 {
				t.Errorf("closed before any slow header line: want a timeout, not a refusal")
			}
			return
		case <-tick.C:
			// Write errors just mean the server has closed; the reader
			// reports it.
			if _, err := fmt.Fprintf(conn, "X-Slow-%d: %s\r\n", lines, strings.Repeat("a", 8)); err == nil {
				lines++
			}
		case <-timeout:
			t.Fatalf("%s: connection still open after %s of slow headers", addr, neverClosed)
		}
	}
}
