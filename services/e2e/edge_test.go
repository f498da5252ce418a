package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// edgeCase is one way of asking: a method, a Content-Type and an Accept.
type edgeCase struct {
	name, method, contentType, accept string
	// want is the format the api answers errors in: "json" or "html".
	want string
}

// edgeCases are the inputs of the api's negotiation (services/api
// respond.go): the body's media type, Accept, and GET.
var edgeCases = []edgeCase{
	{"GET without Accept", "GET", "", "", "json"},
	{"GET from a browser", "GET", "", "text/html,application/xhtml+xml,*/*;q=0.8", "html"},
	{"GET accepting both", "GET", "", "text/html, application/json", "json"},
	{"GET */*", "GET", "", "*/*", "json"},
	{"GET refusing JSON by q=0 (a substring match, as the api)", "GET", "", "application/json;q=0, text/html", "json"},
	{"form post without Accept", "POST", formType, "", "html"},
	{"form post from a browser", "POST", formType, "text/html", "html"},
	{"form post accepting JSON", "POST", formType, "application/json", "json"},
	{"JSON post without Accept", "POST", "application/json", "", "json"},
	{"JSON post, media type in capitals with a charset", "POST", "Application/JSON; charset=utf-8", "text/html", "json"},
	{"JSON post, space before a broken parameter", "POST", "application/json ; charset", "", "json"},
	{"lookalike media type", "POST", "application/jsonx", "", "html"},
	{"multipart form post (curl -F)", "POST", "multipart/form-data; boundary=x", "*/*", "html"},
	{"multipart form post accepting JSON", "POST", "multipart/form-data; boundary=x", "application/json", "json"},
	{"text post accepting anything", "POST", "text/plain", "*/*", "html"},
}

// request asks for an error the api would answer: an unknown message
// (404) for GET, an unreadable body (400 or 415) for POST. Whether the api
// or nginx answers depends on the stack's state.
func (c edgeCase) request(s *stack) (*http.Response, string) {
	s.t.Helper()
	var headers []string
	if c.accept != "" {
		headers = append(headers, "Accept", c.accept)
	}
	if c.method == "GET" {
		return s.request("GET", "/api/messages/00000000-0000-0000-0000-000000000000", "", "", headers...)
	}
	return s.request("POST", "/api/messages", c.contentType, "\x00", headers...)
}

// format is "json" or "html" by the answer's media type.
func format(res *http.Response) string {
	mt, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type"))
	switch mt {
	case "application/json":
		return "json"
	case "text/html":
		return "html"
	}
	return mt
}

// checkEdgeError checks an error nginx answered by itself against the
// contract: status, the format the api would have chosen, a JSON body
// {"error": "..."} or the pt-BR page, no-store, the security headers,
// nginx's request id, Retry-After for 429 and 503, and nothing from the api.
func checkEdgeError(t *testing.T, what string, res *http.Response, body string, status int, wantFormat string) {
	t.Helper()
	if res.StatusCode != status {
		t.Errorf("%s: got %d, want %d\n%.300s", what, res.StatusCode, status, body)
		return
	}
	if got := format(res); got != wantFormat {
		t.Errorf("%s: got %s (%q), want %s", what, got, res.Header.Get("Content-Type"), wantFormat)
	}
	switch wantFormat {
	case "json":
		var e map[string]any
		if err := json.Unmarshal([]byte(body), &e); err != nil {
			t.Errorf("%s: body %q: %v", what, body, err)
		} else if msg, _ := e["error"].(string); msg == "" || len(e) != 1 {
			t.Errorf("%s: body %q, want {\"error\": a sentence}", what, body)
		}
	case "html":
		if !strings.Contains(body, `<html lang="pt-BR">`) || strings.Contains(body, "nginx") {
			t.Errorf("%s: body %.300q, want carteiro's pt-BR page", what, body)
		}
		if _, params, _ := mime.ParseMediaType(res.Header.Get("Content-Type")); !strings.EqualFold(params["charset"], "utf-8") {
			t.Errorf("%s: Content-Type %q, want charset utf-8", what, res.Header.Get("Content-Type"))
		}
	}
	wantRetry := status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable
	if ra := res.Header.Get("Retry-After"); wantRetry {
		if n, err := strconv.Atoi(ra); err != nil || n < 1 {
			t.Errorf("%s: Retry-After %q, want a number of seconds", what, ra)
		}
	} else if ra != "" {
		t.Errorf("%s: Retry-After %q, want none", what, ra)
	}
	for name, want := range map[string]string{
		"Cache-Control":          "no-store",
		"X-Content-Type-Options": "nosniff",
		"X-Frame-Options":        "DENY",
	} {
		if got := res.Header.Get(name); got != want {
			t.Errorf("%s: %s %q, want %q", what, name, got, want)
		}
	}
	if res.Header.Get("Content-Security-Policy") == "" || res.Header.Get("X-Request-Id") == "" {
		t.Errorf("%s: want Content-Security-Policy and X-Request-Id, got %v", what, res.Header)
	}
	if tid := res.Header.Get("X-Trace-Id"); tid != "" {
		t.Errorf("%s: X-Trace-Id %q: the api answered, want nginx", what, tid)
	}
}

// Every error nginx answers by itself follows the api's error contract,
// chosen the way the api chooses: the api's own answer to each case and
// nginx's 502 and 504 to the same case have the same format.
func TestEdgeErrorsFollowTheContract(t *testing.T) {
	s := startStack(t, stackOptions{})

	t.Run("the api's negotiation", func(t *testing.T) {
		for _, c := range edgeCases {
			res, body := c.request(s)
			if res.StatusCode < 400 || res.Header.Get("X-Trace-Id") == "" {
				t.Fatalf("%s: got %d without the api's X-Trace-Id, want an error from the api\n%s", c.name, res.StatusCode, body)
			}
			if got := format(res); got != c.want {
				t.Errorf("%s: the api answered %s, want %s: update edgeCases and nginx.conf's $carteiro_error_format", c.name, got, c.want)
			}
		}
	})

	t.Run("404 from nginx, and no health endpoints on the edge", func(t *testing.T) {
		for _, path := range []string{"/healthz", "/readyz", "/nope.html", "/.env", "/_erro/404.json", "/_erro/502.html", "/nginx-status"} {
			res, body := s.request("GET", path, "", "", "Accept", "application/json")
			checkEdgeError(t, "GET "+path, res, body, http.StatusNotFound, "json")
			res, body = s.request("GET", path, "", "", "Accept", "text/html")
			checkEdgeError(t, "GET "+path+" (browser)", res, body, http.StatusNotFound, "html")
		}
		// The api's own 404 for its prefix.
		for _, path := range []string{"/api/healthz", "/api/readyz"} {
			res, body := s.request("GET", path, "", "", "Accept", "application/json")
			if res.StatusCode != http.StatusNotFound || res.Header.Get("X-Trace-Id") == "" || format(res) != "json" {
				t.Errorf("GET %s: got %d %q, want the api's JSON 404\n%s", path, res.StatusCode, res.Header.Get("Content-Type"), body)
			}
		}
		if res, body := s.request("GET", "/nginx-health", "", ""); res.StatusCode != http.StatusOK || body != "ok\n" {
			t.Errorf("GET /nginx-health: got %d %q, want 200 ok", res.StatusCode, body)
		}
	})

	t.Run("413 from nginx", func(t *testing.T) {
		big := strings.Repeat("a", 100<<10)
		res, body := s.request("POST", "/api/messages", "application/json", `{"assunto":"a","mensagem":"`+big+`"}`)
		checkEdgeError(t, "JSON post", res, body, http.StatusRequestEntityTooLarge, "json")
		res, body = s.request("POST", "/api", formType, "assunto=a&mensagem="+big, "Accept", "text/html", "Origin", s.URL)
		checkEdgeError(t, "form post", res, body, http.StatusRequestEntityTooLarge, "html")
	})

	// The api stalls (SIGSTOP): nginx gives up after proxy_read_timeout
	// (15 s), every case at once.
	t.Run("504 from nginx", func(t *testing.T) {
		s.Signal("api", syscall.SIGSTOP)
		defer s.Signal("api", syscall.SIGCONT)
		var wg sync.WaitGroup
		for _, c := range edgeCases {
			wg.Go(func() {
				res, body := c.request(s)
				checkEdgeError(t, c.name, res, body, http.StatusGatewayTimeout, c.want)
			})
		}
		wg.Wait()
	})

	t.Run("502 from nginx", func(t *testing.T) {
		s.Stop("api")
		defer s.Up()
		for _, c := range edgeCases {
			res, body := c.request(s)
			checkEdgeError(t, c.name, res, body, http.StatusBadGateway, c.want)
		}
		// Nothing of the upstream shows: not its address, not nginx's page
		// (its Server header says only "nginx": server_tokens off).
		res, body := s.request("POST", "/api/messages", "application/json", jsonBody("a", "b"))
		for _, leak := range []string{s.envVar("API_HTTP_ADDR"), "nginx", "upstream", "connect()"} {
			if strings.Contains(body, leak) {
				t.Errorf("502 body shows %q: %s", leak, body)
			}
		}
		if h := fmt.Sprint(res.Header); strings.Contains(h, s.envVar("API_HTTP_ADDR")) || res.Header.Get("Server") != "nginx" {
			t.Errorf("502 headers show more than they should: %s", h)
		}
	})
}

// With Postgres and Redis down, no public answer carries internal text:
// every answer through nginx (page, posts, status, 404s, the edge's own
// errors) is searched for the driver's messages, addresses, user and
// database names. Readiness says so on the internal port, tersely; the
// details are in the api's log.
func TestNoInternalTextInPublicAnswers(t *testing.T) {
	s := startStack(t, stackOptions{privatePostgres: true})
	id := s.submitJSON("antes", "da queda")
	s.Postgres.Stop()
	s.redis.Stop()

	type ask struct {
		method, path, contentType, body string
		headers                         []string
	}
	browser, jsonClient := []string{"Accept", "text/html", "Origin", s.URL}, []string{"Accept", "application/json"}
	var asks []ask
	for _, h := range [][]string{browser, jsonClient} {
		for _, path := range []string{"/", "/healthz", "/readyz", "/api/healthz", "/api/readyz", "/nope",
			"/api/messages/" + id, "/api/messages/00000000-0000-0000-0000-000000000000", "/api/messages/x'"} {
			asks = append(asks, ask{"GET", path, "", "", h})
		}
		asks = append(asks,
			ask{"POST", "/api/messages", "application/json", jsonBody("durante", "a queda"), h},
			ask{"POST", "/api", formType, "assunto=durante&mensagem=a+queda", h},
			ask{"POST", "/api/messages", "application/json", jsonBody("chave", "repetida"),
				append([]string{"Idempotency-Key", `"queda-1"`}, h...)},
			ask{"POST", "/api/messages", "application/json", strings.Repeat("x", 100<<10), h},
		)
	}
	answers := map[string]string{}
	statuses := map[int]int{}
	collect := func(tag string) {
		for _, a := range asks {
			res, body := s.request(a.method, a.path, a.contentType, a.body, a.headers...)
			statuses[res.StatusCode]++
			answers[fmt.Sprintf("%s %s %s %v → %d", tag, a.method, a.path, a.headers[:2], res.StatusCode)] = fmt.Sprint(res.Header) + "\n" + body
		}
	}
	collect("stores down:")

	// The internal port says what is wrong in a word; the log, in full.
	res, err := client.Get("http://" + s.APIInternal[0] + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable || string(b) != "postgres: unavailable\n" {
		t.Errorf("internal /readyz: got %d %q, want 503 %q", res.StatusCode, b, "postgres: unavailable\n")
	}
	if log := s.LogText("api"); !strings.Contains(log, "readiness probe failed") || !strings.Contains(log, fmt.Sprint(s.db.Port)) {
		t.Errorf("api log: no readiness failure with the driver's error\n%s", s.logs())
	}

	// The api itself down too: nginx's 502s.
	s.Stop("api")
	collect("api down:")
	t.Logf("statuses: %v", statuses)
	if statuses[http.StatusServiceUnavailable] == 0 || statuses[http.StatusBadGateway] == 0 {
		t.Errorf("statuses %v: want the api's 503s and nginx's 502s among them", statuses)
	}

	leaks := []string{
		// The stores' and the api's addresses and names.
		fmt.Sprintf("%s:%d", s.db.Host, s.db.Port), s.redis.Addr, s.envVar("API_HTTP_ADDR"), s.APIInternal[0],
		s.db.Name, "user=" + s.db.User, "postgres", "127.0.0.1",
		// What drivers and the runtime say.
		"dial", "connect", "refused", "SQLSTATE", "pgx", "pgconn", "redis", "i/o timeout", "deadline", "EOF",
		"database", "goroutine", "panic",
	}
	for what, text := range answers {
		for _, leak := range leaks {
			if strings.Contains(text, leak) {
				t.Errorf("%s: the answer contains %q:\n%.600s", what, leak, text)
			}
		}
	}
}
