package browser

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/accessibility"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/carteiro/carteiro/services/internal/stacktest"
	"github.com/carteiro/carteiro/services/internal/testenv"
)

var writeDocs = flag.Bool("docs", false, "also write the README's screenshots into docs/")

// viewport is the browser window: the README's pictures are this wide.
const viewportWidth, viewportHeight = 800, 900

// chromium finds the browser: $CHROMIUM, chromium on PATH, /usr/bin/chromium.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHROMIUM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			testenv.Missing(t, "chromium at $CHROMIUM: %v", err)
		}
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if _, err := os.Stat("/usr/bin/chromium"); err != nil {
		testenv.Missing(t, "chromium (apt-get install chromium): %v", err)
	}
	return "/usr/bin/chromium"
}

// tab is one headless Chromium with one tab, recording what the page
// loads and logs.
type tab struct {
	t     *testing.T
	ctx   context.Context
	stack *stacktest.Stack
	host  string // the stack's nginx, host:port

	mu        sync.Mutex
	requests  []request
	responses map[network.RequestID]*network.Response
	console   []consoleEntry
	expected  map[string]int // path → a 4xx answer the test provokes
}

type request struct {
	ID     network.RequestID
	Method string
	URL    string
}

// consoleEntry is one console API call, uncaught exception, browser log
// entry or CSP violation.
type consoleEntry struct {
	Kind      string // console, exception, log, csp
	Level     string
	Source    string
	Text      string
	URL       string
	RequestID network.RequestID
}

func (e consoleEntry) String() string {
	s := e.Kind + "/" + e.Level
	if e.Source != "" {
		s += "/" + e.Source
	}
	s += ": " + e.Text
	if e.URL != "" {
		s += " (" + e.URL + ")"
	}
	return s
}

type tabOptions struct {
	noJavaScript bool
}

// cspProbe runs in every document before the page's scripts and reports
// each Content-Security-Policy violation through the binding.
const cspProbe = `document.addEventListener("securitypolicyviolation", function (e) {
	window.__carteiroCSP(JSON.stringify({directive: e.violatedDirective, blocked: e.blockedURI, source: e.sourceFile || "", line: e.lineNumber || 0}));
});`

// start starts a stack and a browser for t (the browser's presence is
// checked first: no stack is started for a test that cannot run).
func start(t *testing.T, o tabOptions) (*stacktest.Stack, *tab) {
	t.Helper()
	chromium(t)
	s := stacktest.Start(t, stacktest.Options{})
	return s, newTab(t, s, o)
}

// newTab starts a browser for t against s. When t ends it checks that the
// page loaded nothing from another host and logged no error, warning,
// exception or CSP violation, then closes the browser.
func newTab(t *testing.T, s *stacktest.Stack, o tabOptions) *tab {
	t.Helper()
	exe := chromium(t)
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	tb := &tab{t: t, stack: s, host: u.Host, responses: map[network.RequestID]*network.Response{}, expected: map[string]int{}}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	var chromeOut bytes.Buffer
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox, // root in a container: the sandbox needs user namespaces
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("lang", "pt-BR"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(viewportWidth, viewportHeight),
		chromedp.CombinedOutput(&chromeOut),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	tb.ctx, _ = chromedp.NewContext(allocCtx, chromedp.WithListener(tb.record))

	// The first call starts the browser and opens the tab.
	if err := chromedp.Do(tb.ctx); err != nil {
		t.Fatalf("starting %s: %v\n%s", exe, err, chromeOut.String())
	}
	t.Cleanup(func() {
		tb.assertClean()
		if err := chromedp.Cancel(tb.ctx); err != nil {
			t.Logf("closing the browser: %v", err)
		}
	})
	if _, err := chromedp.Call(tb.ctx, runtime.AddBinding, runtime.AddBindingParams{Name: "__carteiroCSP"}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(tb.ctx, page.AddScriptToEvaluateOnNewDocument,
		page.AddScriptToEvaluateOnNewDocumentParams{Source: cspProbe}); err != nil {
		t.Fatal(err)
	}
	if o.noJavaScript {
		if _, err := chromedp.Call(tb.ctx, emulation.SetScriptExecutionDisabled,
			emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
			t.Fatal(err)
		}
	}
	return tb
}

// record runs in the tab's event loop, in the order of the events.
func (tb *tab) record(ev any) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	switch ev := ev.(type) {
	case *network.EventRequestWillBeSent:
		tb.requests = append(tb.requests, request{ev.RequestID, ev.Request.Method, ev.Request.URL})
	case *network.EventResponseReceived:
		tb.responses[ev.RequestID] = ev.Response
	case *runtime.EventConsoleAPICalled:
		var parts []string
		for _, a := range ev.Args {
			parts = append(parts, remoteText(a))
		}
		tb.console = append(tb.console, consoleEntry{Kind: "console", Level: string(ev.Type), Text: strings.Join(parts, " ")})
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		text := d.Text
		if d.Exception != nil {
			text += " " + d.Exception.Description
		}
		tb.console = append(tb.console, consoleEntry{Kind: "exception", Level: "error", Text: text, URL: d.URL})
	case *log.EventEntryAdded:
		e := ev.Entry
		tb.console = append(tb.console, consoleEntry{Kind: "log", Level: string(e.Level), Source: string(e.Source),
			Text: e.Text, URL: e.URL, RequestID: e.NetworkRequestID})
	case *runtime.EventBindingCalled:
		if ev.Name == "__carteiroCSP" {
			tb.console = append(tb.console, consoleEntry{Kind: "csp", Level: "error", Text: ev.Payload})
		}
	}
}

func remoteText(o *runtime.RemoteObject) string {
	if len(o.Value) > 0 {
		var s string
		if json.Unmarshal(o.Value, &s) == nil {
			return s
		}
		return string(o.Value)
	}
	if o.UnserializableValue != "" {
		return string(o.UnserializableValue)
	}
	return o.Description
}

// expect4xx declares that the test provokes answer code on path: the
// browser's "Failed to load resource" entry for it is not an error.
func (tb *tab) expect4xx(path string, code int) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.expected[path] = code
}

// problems lists the requests to another host and the console entries that
// are errors, warnings, exceptions or CSP violations, less the network
// entries of the answers the test provoked.
func (tb *tab) problems() (external []string, console []consoleEntry) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	for _, r := range tb.requests {
		u, err := url.Parse(r.URL)
		if err != nil {
			external = append(external, r.URL)
			continue
		}
		if u.Scheme == "data" || u.Scheme == "blob" {
			continue // in the page, not the network
		}
		if u.Scheme != "http" || u.Host != tb.host {
			external = append(external, r.Method+" "+r.URL)
		}
	}
	for _, e := range tb.console {
		switch {
		case e.Kind == "exception", e.Kind == "csp":
		case e.Kind == "console" && (e.Level == "error" || e.Level == "warning" || e.Level == "assert"):
		case e.Kind == "log" && (e.Level == "error" || e.Level == "warning"):
			if e.Source == "network" && tb.provoked(e) {
				continue
			}
		default:
			continue
		}
		console = append(console, e)
	}
	return external, console
}

// provoked reports whether a network log entry is about an answer the test
// declared with expect4xx. tb.mu is held.
func (tb *tab) provoked(e consoleEntry) bool {
	res, ok := tb.responses[e.RequestID]
	if !ok {
		return false
	}
	u, err := url.Parse(res.URL)
	if err != nil {
		return false
	}
	code, ok := tb.expected[u.Path]
	return ok && int(res.Status) == code && code >= 400 && code < 500
}

func (tb *tab) assertClean() {
	tb.t.Helper()
	external, console := tb.problems()
	for _, r := range external {
		tb.t.Errorf("the page loaded an external resource: %s", r)
	}
	for _, e := range console {
		tb.t.Errorf("browser console: %s", e)
	}
}

// posts counts the POST requests the browser sent to path.
func (tb *tab) posts(path string) int {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	n := 0
	for _, r := range tb.requests {
		if u, err := url.Parse(r.URL); err == nil && r.Method == "POST" && u.Path == path {
			n++
		}
	}
	return n
}

// do runs actions, failing the test on error.
func (tb *tab) do(actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	if err := chromedp.Do(tb.ctx, actions...); err != nil {
		tb.t.Fatalf("browser: %v\n%s", err, tb.stack.Logs())
	}
}

// run runs one action and returns its value, failing the test on error.
func run[T any](tb *tab, a chromedp.Action[T]) T {
	tb.t.Helper()
	v, err := chromedp.Run(tb.ctx, a)
	if err != nil {
		tb.t.Fatalf("browser: %v", err)
	}
	return v
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](tb *tab, js string) T {
	tb.t.Helper()
	return run(tb, chromedp.Evaluate[T](js))
}

// open loads the form and waits for its button.
func (tb *tab) open() {
	tb.t.Helper()
	tb.do(chromedp.Navigate(tb.stack.URL+"/"), chromedp.WaitVisible(chromedp.ID("enviar")))
}

// fill types into the two fields as a person would.
func (tb *tab) fill(assunto, mensagem string) {
	tb.t.Helper()
	tb.do(
		chromedp.SendKeys(chromedp.ID("assunto"), assunto),
		chromedp.SendKeys(chromedp.ID("mensagem"), mensagem),
	)
}

// waitFinal waits until the page shows a final delivery status (the
// data-status of #message-status) and returns it.
func (tb *tab) waitFinal() string {
	tb.t.Helper()
	st, err := chromedp.Run(tb.ctx, chromedp.Poll[string](
		`(function () { var s = document.getElementById("message-status").dataset.status; return s === "sent" || s === "dead" ? s : ""; })()`,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(45*time.Second)))
	if err != nil {
		tb.t.Fatalf("waiting for the final status on the page: %v\n%s", err, tb.stack.Logs())
	}
	return st
}

// text returns an element's textContent, trimmed.
func (tb *tab) text(id string) string {
	tb.t.Helper()
	return strings.TrimSpace(eval[string](tb, fmt.Sprintf(`document.getElementById(%q).textContent`, id)))
}

// axNode returns the accessibility node Chromium computed for the element
// with the given id.
func (tb *tab) axNode(id string) *accessibility.Node {
	tb.t.Helper()
	nodes := run(tb, chromedp.Nodes(chromedp.ID(id), chromedp.NodeReady))
	fetchRelatives := false
	res, err := chromedp.Call(tb.ctx, accessibility.GetPartialAXTree, accessibility.GetPartialAXTreeParams{
		BackendNodeID: nodes[0].BackendNodeID, FetchRelatives: &fetchRelatives,
	})
	if err != nil || len(res.Nodes) == 0 {
		tb.t.Fatalf("accessibility node of #%s: %v", id, err)
	}
	return res.Nodes[0]
}

// axString decodes an accessibility value as a string ("" when absent).
func axString(v *accessibility.Value) string {
	if v == nil || len(v.Value) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(v.Value, &s) == nil {
		return s
	}
	return strings.Trim(string(v.Value), `"`)
}

// axProperty returns one property of an accessibility node, as text.
func axProperty(n *accessibility.Node, name string) string {
	for _, p := range n.Properties {
		if string(p.Name) == name {
			return axString(p.Value)
		}
	}
	return ""
}

// screenshot saves the whole page as artifacts/screenshots/<name>.png and,
// with -docs, as docs/<docName>.png for the README.
func (tb *tab) screenshot(name, docName string) {
	tb.t.Helper()
	// The pointer off the page: no hover style in the picture.
	tb.do(chromedp.MouseEvent(chromedp.MouseMoved, 0, 0))
	buf := run(tb, chromedp.FullScreenshot(100))
	dir := filepath.Join(stacktest.RepoRoot(), "artifacts", "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), buf, 0o644); err != nil {
		tb.t.Fatal(err)
	}
	if *writeDocs && docName != "" {
		small, err := shrinkPNG(buf)
		if err != nil {
			tb.t.Fatal(err)
		}
		path := filepath.Join(stacktest.RepoRoot(), "docs", docName+".png")
		if err := os.WriteFile(path, small, 0o644); err != nil {
			tb.t.Fatal(err)
		}
		tb.t.Logf("wrote %s (%d bytes)", path, len(small))
	}
}

// shrinkPNG re-encodes a screenshot for the repository: a paletted image
// (the page has few colours; when it has more than 256, the least used
// ones map to their nearest kept colour) at the best compression.
func shrinkPNG(data []byte) ([]byte, error) {
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	counts := map[color.RGBA]int{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			counts[color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)]++
		}
	}
	colours := make([]color.RGBA, 0, len(counts))
	for c := range counts {
		colours = append(colours, c)
	}
	slices.SortFunc(colours, func(a, b color.RGBA) int { return counts[b] - counts[a] })
	if len(colours) > 256 {
		colours = colours[:256]
	}
	pal := make(color.Palette, len(colours))
	for i, c := range colours {
		pal[i] = c
	}
	out := image.NewPaletted(b, pal)
	draw.Draw(out, b, img, b.Min, draw.Src)
	var w bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	if err := enc.Encode(&w, out); err != nil {
		return nil, err
	}
	return w.Bytes(), nil
}
