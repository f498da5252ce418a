package browser

import (
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// TestLabelsAndNames checks what assistive technology gets from the form:
// every field has a label bound to it (label[for] → id) that gives its
// accessible name, its help text as description, the button's name, the
// live status region, the page language and its landmarks.
func TestLabelsAndNames(t *testing.T) {
	_, tb := start(t, tabOptions{})
	tb.open()

	type field struct {
		ID     string `json:"id"`
		Label  string `json:"label"`
		Bound  bool   `json:"bound"`
		Hidden bool   `json:"hidden"`
	}
	fields := eval[[]field](tb, `Array.prototype.map.call(document.querySelectorAll("input, textarea, select"), function (el) {
		var label = el.id ? document.querySelector('label[for="' + CSS.escape(el.id) + '"]') : null;
		return {
			id: el.id,
			label: label ? label.textContent.trim() : "",
			bound: !!label && Array.prototype.indexOf.call(el.labels, label) >= 0,
			hidden: el.type === "hidden"
		};
	})`)
	if len(fields) != 2 {
		t.Errorf("%d form fields, want 2: %+v", len(fields), fields)
	}
	for _, f := range fields {
		if f.Hidden {
			continue
		}
		if f.ID == "" || f.Label == "" || !f.Bound {
			t.Errorf("field without a bound label: %+v", f)
		}
	}

	for _, c := range []struct{ id, role, name, description string }{
		{"assunto", "textbox", "Assunto", "Até 100 caracteres, em uma linha."},
		{"mensagem", "textbox", "Mensagem", "Até 250 caracteres."},
		{"enviar", "button", "Enviar !", ""},
	} {
		n := tb.axNode(c.id)
		if role, name := axString(n.Role), axString(n.Name); role != c.role || name != c.name {
			t.Errorf("#%s: role %q name %q, want %q %q", c.id, role, name, c.role, c.name)
		}
		// The live counter is aria-hidden: it is not read after every key.
		if d := axString(n.Description); d != c.description {
			t.Errorf("#%s: description %q, want %q", c.id, d, c.description)
		}
		if c.role == "textbox" && axProperty(n, "required") != "true" {
			t.Errorf("#%s is not announced as required", c.id)
		}
	}
	st := tb.axNode("status")
	if role, live := axString(st.Role), axProperty(st, "live"); role != "status" || live != "polite" {
		t.Errorf("#status: role %q live %q, want status polite", role, live)
	}

	if lang := eval[string](tb, `document.documentElement.lang`); lang != "pt-BR" {
		t.Errorf("html lang %q, want pt-BR", lang)
	}
	if got := eval[string](tb, `document.querySelectorAll("main").length + "|" + document.querySelectorAll("h1").length`); got != "1|1" {
		t.Errorf("main|h1 count %s, want 1|1", got)
	}
	if n := eval[int](tb, `document.querySelectorAll("[tabindex]:not([tabindex='0']):not([tabindex='-1'])").length`); n != 0 {
		t.Errorf("%d elements with a positive tabindex", n)
	}
}

// TestKeyboardOnly sends a message with the keyboard alone: Tab from the
// top of the page reaches the subject, then the body, then the button, each
// with a visible focus ring; Enter sends; the page answers as for a click.
func TestKeyboardOnly(t *testing.T) {
	s, tb := start(t, tabOptions{})
	tb.open()

	focused := func(want string) {
		t.Helper()
		type focus struct {
			ID      string  `json:"id"`
			Style   string  `json:"style"`
			Width   float64 `json:"width"`
			Visible bool    `json:"visible"`
			Ratio   float64 `json:"ratio"`
		}
		f := eval[focus](tb, contrastLib+`(function () {
			var el = document.activeElement, cs = getComputedStyle(el);
			return {
				id: el.id, style: cs.outlineStyle, width: parseFloat(cs.outlineWidth),
				visible: el.matches(":focus-visible"),
				ratio: contrast(parseColour(cs.outlineColor), backgroundOf(el.parentElement))
			};
		})()`)
		if f.ID != want {
			t.Fatalf("focus on #%s, want #%s", f.ID, want)
		}
		// WCAG 2.4.7 and 1.4.11: a visible indicator, 3:1 against its surroundings.
		if !f.Visible || f.Style == "none" || f.Width < 2 || f.Ratio < 3 {
			t.Errorf("#%s focus indicator: %+v, want a visible outline of 2px or more at 3:1", want, f)
		}
	}

	tb.do(chromedp.KeyEvent(kb.Tab))
	focused("assunto")
	const assunto = "Só com o teclado"
	tb.do(chromedp.KeyEvent(assunto), chromedp.KeyEvent(kb.Tab))
	focused("mensagem")
	tb.do(chromedp.KeyEvent("Nenhum mouse foi usado."), chromedp.KeyEvent(kb.Tab))
	focused("enviar")
	tb.do(chromedp.KeyEvent(kb.Enter))

	tb.do(chromedp.WaitVisible(chromedp.ID("resultado")))
	if st := tb.waitFinal(); st != "sent" {
		t.Fatalf("final status %s", st)
	}
	id := tb.text("message-id")
	var got string
	s.QueryRow("SELECT assunto FROM emails WHERE id = $1", []any{id}, &got)
	if got != assunto {
		t.Errorf("stored subject %q, want %q", got, assunto)
	}
	if mails := waitMail(t, s, assunto); len(mails) != 1 {
		t.Errorf("%d mails, want 1", len(mails))
	}
}

// contrastLib is the WCAG 2 contrast arithmetic, in the page: parse a
// computed colour, composite backgrounds from the root down (the canvas is
// white), relative luminance, contrast ratio.
const contrastLib = `
function parseColour(c) {
	var m = /^rgba?\(([^)]*)\)$/.exec(c.trim());
	if (!m) { throw new Error("cannot parse colour " + c); }
	var p = m[1].split(/[\s,\/]+/).filter(Boolean).map(parseFloat);
	return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1};
}
function over(top, bottom) {
	var a = top.a + bottom.a * (1 - top.a);
	if (a === 0) { return {r: 0, g: 0, b: 0, a: 0}; }
	function mix(t, b) { return (t * top.a + b * bottom.a * (1 - top.a)) / a; }
	return {r: mix(top.r, bottom.r), g: mix(top.g, bottom.g), b: mix(top.b, bottom.b), a: a};
}
function backgroundOf(el) {
	var chain = [];
	for (var e = el; e; e = e.parentElement) { chain.unshift(e); }
	var bg = {r: 255, g: 255, b: 255, a: 1};
	chain.forEach(function (e) {
		var cs = getComputedStyle(e);
		if (cs.backgroundImage !== "none") { throw new Error("background image on " + e.tagName + ": contrast not computable"); }
		bg = over(parseColour(cs.backgroundColor), bg);
	});
	return bg;
}
function luminance(c) {
	function ch(v) { v /= 255; return v <= 0.04045 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }
	return 0.2126 * ch(c.r) + 0.7152 * ch(c.g) + 0.0722 * ch(c.b);
}
function contrast(a, b) {
	var l1 = luminance(a), l2 = luminance(b);
	return (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
}
function hex(c) {
	return "#" + [c.r, c.g, c.b].map(function (v) { return ("0" + Math.round(v).toString(16)).slice(-2); }).join("");
}
`

// contrastCheck measures every visible element that shows text (a text
// node of its own, or a form control), the colour of its text over its
// composited background, against WCAG AA: 4.5:1, or 3:1 for large text
// (24px, or 18.66px bold). Disabled controls are exempt. required are
// selectors that must be among the measured elements.
const contrastCheck = contrastLib + `(function (required) {
	function visible(el) {
		var cs = getComputedStyle(el);
		return el.getClientRects().length > 0 && cs.visibility !== "hidden" && cs.display !== "none";
	}
	function ownText(el) {
		return Array.prototype.some.call(el.childNodes, function (n) { return n.nodeType === 3 && n.textContent.trim() !== ""; });
	}
	function name(el) {
		return el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + (el.className && typeof el.className === "string" ? "." + el.className.trim().split(/\s+/).join(".") : "");
	}
	var measured = [], results = [];
	Array.prototype.forEach.call(document.body.querySelectorAll("*"), function (el) {
		if (["SCRIPT", "STYLE", "NOSCRIPT"].indexOf(el.tagName) >= 0 || !visible(el)) { return; }
		var control = el.matches("input, textarea, select, button");
		if (!control && !ownText(el)) { return; }
		if (el.disabled) { return; }
		var cs = getComputedStyle(el);
		var opacity = 1;
		for (var e = el; e; e = e.parentElement) { opacity *= parseFloat(getComputedStyle(e).opacity); }
		var bg = backgroundOf(el);
		var fg = parseColour(cs.color);
		fg.a *= opacity;
		var text = over(fg, bg);
		var size = parseFloat(cs.fontSize), weight = parseInt(cs.fontWeight, 10);
		var large = size >= 24 || (size >= 18.66 && weight >= 700);
		measured.push(el);
		results.push({
			element: name(el),
			text: (el.value !== undefined && control && el.tagName !== "BUTTON" ? el.value : el.textContent).trim().slice(0, 40),
			fg: hex(text), bg: hex(bg), ratio: contrast(text, bg), need: large ? 3 : 4.5
		});
	});
	var missing = required.filter(function (sel) {
		return !measured.some(function (el) { return el.matches(sel); });
	});
	return {results: results, missing: missing};
})`

type contrastResult struct {
	Element string  `json:"element"`
	Text    string  `json:"text"`
	FG      string  `json:"fg"`
	BG      string  `json:"bg"`
	Ratio   float64 `json:"ratio"`
	Need    float64 `json:"need"`
}

// checkContrast runs contrastCheck in the page's current state.
func checkContrast(t *testing.T, tb *tab, state string, required ...string) {
	t.Helper()
	req := "[" + strings.Join(func() []string {
		q := make([]string, len(required))
		for i, r := range required {
			q[i] = fmt.Sprintf("%q", r)
		}
		return q
	}(), ",") + "]"
	out := eval[struct {
		Results []contrastResult `json:"results"`
		Missing []string         `json:"missing"`
	}](tb, contrastCheck+"("+req+")")
	if len(out.Missing) > 0 {
		t.Errorf("%s: not measured (hidden or without text?): %v", state, out.Missing)
	}
	if len(out.Results) == 0 {
		t.Fatalf("%s: nothing measured", state)
	}
	lowest := out.Results[0]
	for _, r := range out.Results {
		if r.Ratio < r.Need {
			t.Errorf("%s: %s %q: %s on %s is %.2f:1, want at least %.1f:1", state, r.Element, r.Text, r.FG, r.BG, r.Ratio, r.Need)
		}
		if r.Ratio/r.Need < lowest.Ratio/lowest.Need {
			lowest = r
		}
	}
	t.Logf("%s: %d text elements, lowest %s %s on %s %.2f:1 (need %.1f)", state, len(out.Results), lowest.Element, lowest.FG, lowest.BG, lowest.Ratio, lowest.Need)
}

// TestColourContrast computes the contrast of every text the page shows,
// from the rendered styles, in each state: the empty form, the form with
// its errors, after a message was sent, and the api's status page.
func TestColourContrast(t *testing.T) {
	s, tb := start(t, tabOptions{})
	tb.open()
	checkContrast(t, tb, "form", "h1", ".introducao", "label[for=assunto]", "label[for=mensagem]",
		"#assunto", "#mensagem", ".ajuda", "#enviar")

	tb.do(chromedp.Click(chromedp.ID("enviar")))
	checkContrast(t, tb, "errors", "#assunto-erro", "#mensagem-erro", "#status-texto")

	tb.fill("Contraste", "Cores medidas no navegador.")
	tb.do(chromedp.Click(chromedp.ID("enviar")))
	if st := tb.waitFinal(); st != "sent" {
		t.Fatalf("final status %s", st)
	}
	checkContrast(t, tb, "sent", "#status-texto", ".resultado dt", "#message-id", "#message-status", "#trace-id")
	id := tb.text("message-id")

	// The api's own page, as a browser without JavaScript follows it.
	tb.do(chromedp.Navigate(s.URL+"/api/messages/"+id), chromedp.WaitVisible(chromedp.ID("message-status")))
	checkContrast(t, tb, "status page", "h1", "#message-status", "a")
}
