package browser

import (
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// Every test's tab checks, when the test ends, that the page loaded nothing
// from another host and that the console has no error, warning, exception
// or CSP violation (newTab). This test looks closer at one page load and
// one send, then proves the checks can fail: a canary breaks each rule on
// purpose and must be caught.
func TestNoExternalResourcesOrConsoleErrors(t *testing.T) {
	s, tb := start(t, tabOptions{})
	res, err := chromedp.Run(tb.ctx, chromedp.NavigateResponse(s.URL+"/"))
	if err != nil {
		t.Fatal(err)
	}
	csp := ""
	for k, v := range res.Headers {
		if strings.EqualFold(k, "Content-Security-Policy") {
			csp, _ = v.(string)
		}
	}
	if !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("the page's Content-Security-Policy is %q, want default-src 'self'", csp)
	}
	tb.do(chromedp.WaitVisible(chromedp.ID("enviar")))
	tb.fill("Sem recursos externos", "Só o que vem do próprio servidor.")
	tb.do(chromedp.Click(chromedp.ID("enviar")))
	if st := tb.waitFinal(); st != "sent" {
		t.Fatalf("final status %s", st)
	}

	// What the page loaded: its four files, then the api.
	var paths []string
	tb.mu.Lock()
	for _, r := range tb.requests {
		if u, err := url.Parse(r.URL); err == nil {
			paths = append(paths, r.Method+" "+u.Path)
		}
	}
	tb.mu.Unlock()
	for _, want := range []string{"GET /", "GET /app.css", "GET /app.js", "GET /favicon.svg", "POST /api/messages"} {
		if !slices.Contains(paths, want) {
			t.Errorf("the browser did not request %s; requests: %v", want, paths)
		}
	}
	external, console := tb.problems()
	if len(external) > 0 || len(console) > 0 {
		t.Errorf("external %v, console %v", external, console)
	}

	// The canary. An inline script and an image from another host: CSP
	// blocks both, and both violations must be seen; so must a console.error.
	eval[bool](tb, `(function () {
		var s = document.createElement("script");
		s.textContent = "window.__ran = true";
		document.body.appendChild(s);
		var img = document.createElement("img");
		img.src = "http://192.0.2.1/canario.png";
		document.body.appendChild(img);
		console.error("canário");
		return true;
	})()`)
	tb.waitProblems(func(external []string, console []consoleEntry) bool {
		return hasEntry(console, "csp", "script-src") && hasEntry(console, "csp", "img-src") && hasEntry(console, "console", "canário")
	})
	if eval[bool](tb, `window.__ran === true`) {
		t.Error("the inline script ran despite the CSP")
	}

	// With the CSP bypassed, the image is requested from the other host: the
	// request must be seen as external.
	if _, err := chromedp.Call(tb.ctx, page.SetBypassCSP, page.SetBypassCSPParams{Enabled: true}); err != nil {
		t.Fatal(err)
	}
	tb.do(chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("enviar")))
	eval[bool](tb, `(function () {
		var img = document.createElement("img");
		img.src = "http://127.0.0.2:9/canario.png";
		document.body.appendChild(img);
		return true;
	})()`)
	tb.waitProblems(func(external []string, _ []consoleEntry) bool {
		return slices.ContainsFunc(external, func(r string) bool { return strings.Contains(r, "127.0.0.2:9/canario.png") })
	})
	// The canary is not a finding of this test.
	tb.reset()
}

func hasEntry(entries []consoleEntry, kind, text string) bool {
	return slices.ContainsFunc(entries, func(e consoleEntry) bool {
		return e.Kind == kind && strings.Contains(e.Text, text)
	})
}

// waitProblems waits until the recorded problems satisfy ok.
func (tb *tab) waitProblems(ok func(external []string, console []consoleEntry) bool) {
	tb.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		external, console := tb.problems()
		if ok(external, console) {
			return
		}
		if time.Now().After(deadline) {
			tb.t.Fatalf("the checks missed the canary: external %v, console %v", external, console)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// reset forgets what the tab recorded so far.
func (tb *tab) reset() {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.requests, tb.console = nil, nil
	clear(tb.responses)
}
