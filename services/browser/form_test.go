package browser

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/carteiro/carteiro/services/internal/stacktest"
)

// statusTrail records every data-status the page gives #message-status,
// from the moment it is installed.
const statusTrail = `(function () {
	window.__statusTrail = [];
	var el = document.getElementById("message-status");
	new MutationObserver(function () {
		var s = el.dataset.status;
		if (s && window.__statusTrail[window.__statusTrail.length - 1] !== s) { window.__statusTrail.push(s); }
	}).observe(el, {attributes: true, attributeFilter: ["data-status"]});
	return true;
})()`

// waitMail waits until Mailpit holds a mail with the subject and returns
// every such mail.
func waitMail(t *testing.T, s *stacktest.Stack, subject string) []stacktest.MailpitMessage {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var found []stacktest.MailpitMessage
		for _, m := range s.Mails() {
			if m.Subject == subject {
				found = append(found, m)
			}
		}
		if len(found) > 0 || time.Now().After(deadline) {
			return found
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSendShowsSentAndMailArrives fills and sends the form as a person
// would: the page shows the message id at once, its status moves from "na
// fila" to "enviada" as the worker delivers it, and the mail, with the
// same subject and Message-ID, is in Mailpit.
func TestSendShowsSentAndMailArrives(t *testing.T) {
	s, tb := start(t, tabOptions{})
	tb.open()
	if title := run(tb, chromedp.Title()); !strings.Contains(title, "Carteiro") {
		t.Errorf("title %q", title)
	}
	eval[bool](tb, statusTrail)

	const assunto = "Olá do navegador: ação & reação"
	const mensagem = "Uma mensagem escrita no Chromium.\nCom acentuação, duas linhas."
	tb.fill(assunto, mensagem)
	if got := tb.text("assunto-contador"); got != "(31/100)" {
		t.Errorf("subject counter %q, want (31/100)", got)
	}
	tb.screenshot("01-formulario-preenchido", "")
	tb.do(chromedp.Click(chromedp.ID("enviar")))

	tb.do(chromedp.WaitVisible(chromedp.ID("resultado")))
	id := tb.text("message-id")
	if len(id) < 10 {
		t.Fatalf("message id on the page: %q", id)
	}
	if got := tb.text("status-texto"); got != "Mensagem recebida! Acompanhe abaixo a situação do envio." {
		t.Errorf("status text %q", got)
	}
	// The form is cleared for the next message.
	if v := run(tb, chromedp.Value(chromedp.ID("assunto"))); v != "" {
		t.Errorf("subject after sending: %q", v)
	}

	if st := tb.waitFinal(); st != "sent" {
		t.Fatalf("final status on the page: %s", st)
	}
	if got := tb.text("message-status"); got != "enviada" {
		t.Errorf("#message-status says %q, want enviada", got)
	}
	trail := eval[[]string](tb, `window.__statusTrail`)
	if len(trail) == 0 || trail[len(trail)-1] != "sent" {
		t.Errorf("status trail %v, want it to end in sent", trail)
	}
	t.Logf("statuses the page showed: %v", trail)

	// The trace id the api answered is on the page.
	if tr := tb.text("trace-id"); len(tr) != 32 {
		t.Errorf("trace id on the page: %q", tr)
	}
	tb.screenshot("02-enviada", "carteiro-enviada")

	// The page's id is the stored message, sent.
	var status, dbSubject string
	s.QueryRow("SELECT status, assunto FROM emails WHERE id = $1", []any{id}, &status, &dbSubject)
	if status != "sent" || dbSubject != assunto {
		t.Errorf("row %s: status %q, assunto %q", id, status, dbSubject)
	}
	if n := s.CountRows(); n != 1 {
		t.Errorf("%d rows, want 1", n)
	}
	mails := waitMail(t, s, assunto)
	if len(mails) != 1 {
		t.Fatalf("%d mails with subject %q in Mailpit, want 1", len(mails), assunto)
	}
	if mid := s.MessageID(id); mails[0].MessageID != mid {
		t.Errorf("Mailpit Message-ID %q, want %q", mails[0].MessageID, mid)
	}
	full, _ := s.MailByMessageID(mails[0].MessageID)
	if !strings.Contains(strings.ReplaceAll(full.Text, "\r\n", "\n"), mensagem) {
		t.Errorf("mail text %q does not hold the message", full.Text)
	}
	if n := tb.posts("/api/messages"); n != 1 {
		t.Errorf("the page sent %d POSTs, want 1", n)
	}
}

// TestInvalidFieldsShowInlineErrors submits empty, blank and over-long
// fields (the over-long ones set by script, as a paste would) and a
// subject the api refuses: each shows its pt-BR message under its field,
// visible, marked aria-invalid and referenced by aria-describedby, with a
// summary in the live region and the focus on the first wrong field. Nothing
// is stored.
func TestInvalidFieldsShowInlineErrors(t *testing.T) {
	s, tb := start(t, tabOptions{})
	// U+2028 passes the page's own check but not the api's (it ends a line in
	// JavaScript): the answer is a 400 whose codes the page shows inline.
	tb.expect4xx("/api/messages", http.StatusBadRequest)

	cases := []struct {
		name               string
		assunto, mensagem  string
		wantAssunto, wantM string
		byScript           bool
	}{
		{name: "empty", wantAssunto: "Informe o assunto.", wantM: "Escreva a mensagem."},
		{name: "blank", assunto: "   ", mensagem: "  \n ",
			wantAssunto: "O assunto não pode ter apenas espaços.", wantM: "A mensagem não pode ter apenas espaços."},
		{name: "over-long", assunto: strings.Repeat("a", 101), mensagem: strings.Repeat("é", 251), byScript: true,
			wantAssunto: "O assunto deve ter no máximo 100 caracteres.", wantM: "A mensagem deve ter no máximo 250 caracteres."},
		{name: "subject too long, body fine", assunto: strings.Repeat("x", 150), mensagem: "ok", byScript: true,
			wantAssunto: "O assunto deve ter no máximo 100 caracteres."},
		{name: "refused by the api", assunto: "linha\u2028outra", mensagem: "ok", byScript: true,
			wantAssunto: "O assunto não pode ter quebras de linha nem caracteres de controle."},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tb.t = t
			tb.open()
			postsBefore := tb.posts("/api/messages")
			if c.byScript {
				tb.do(
					chromedp.SetJavascriptAttribute(chromedp.ID("assunto"), "value", c.assunto),
					chromedp.SetJavascriptAttribute(chromedp.ID("mensagem"), "value", c.mensagem),
				)
			} else if c.assunto != "" || c.mensagem != "" {
				tb.fill(c.assunto, c.mensagem)
			}
			tb.do(chromedp.Click(chromedp.ID("enviar")))
			// The server's answer, when there is one, comes back asynchronously.
			if _, err := chromedp.Run(tb.ctx, chromedp.Poll[bool](`document.getElementById("status-texto").textContent === "Corrija os campos indicados."`,
				chromedp.WithPollingTimeout(10*time.Second))); err != nil {
				t.Fatalf("no error summary: %v (status text %q)", err, tb.text("status-texto"))
			}
			for _, f := range []struct{ field, want string }{{"assunto", c.wantAssunto}, {"mensagem", c.wantM}} {
				checkFieldError(t, tb, f.field, f.want)
			}
			// The summary is in the live region, so it is announced.
			st := tb.axNode("status")
			if role, live := axString(st.Role), axProperty(st, "live"); role != "status" || live != "polite" {
				t.Errorf("#status: role %q, live %q; want status, polite", role, live)
			}
			// The focus is on the first wrong field, whose error is its description.
			first := "assunto"
			if c.wantAssunto == "" {
				first = "mensagem"
			}
			if got := eval[string](tb, `document.activeElement.id`); got != first {
				t.Errorf("focus on #%s, want #%s", got, first)
			}
			sent := tb.posts("/api/messages") - postsBefore
			switch c.name {
			case "empty":
				tb.screenshot("03-erros", "carteiro-erros")
			case "refused by the api":
				by := "the page's own check"
				if sent == 1 {
					by = "the api (400 with codes, shown inline)"
				}
				t.Logf("U+2028 in the subject was refused by %s", by)
			}
			// The page's own checks send nothing.
			if c.name != "refused by the api" && sent != 0 {
				t.Errorf("the page sent %d POSTs for fields it knows are wrong", sent)
			}
		})
	}
	tb.t = t

	// Typing into a wrong field clears its error.
	tb.open()
	tb.do(chromedp.Click(chromedp.ID("enviar")), chromedp.SendKeys(chromedp.ID("assunto"), "x"))
	if got := eval[string](tb, `(document.getElementById("assunto").getAttribute("aria-invalid") || "") + "|" + document.getElementById("assunto-erro").textContent`); got != "|" {
		t.Errorf("after typing, aria-invalid|error = %q, want both empty", got)
	}

	if n := s.CountRows(); n != 0 {
		t.Errorf("%d rows stored, want 0", n)
	}
	// Only the U+2028 case reached the api (and only while the page's check
	// lets U+2028 through).
	if n := tb.posts("/api/messages"); n > 1 {
		t.Errorf("the page sent %d POSTs, want at most 1", n)
	}
}

// checkFieldError checks one field's inline error: want empty means none.
func checkFieldError(t *testing.T, tb *tab, field, want string) {
	t.Helper()
	type state struct {
		Text        string `json:"text"`
		Visible     bool   `json:"visible"`
		Invalid     string `json:"invalid"`
		DescribedBy string `json:"describedby"`
	}
	st := eval[state](tb, `(function (f) {
		var input = document.getElementById(f), err = document.getElementById(f + "-erro");
		var cs = getComputedStyle(err);
		return {
			text: err.textContent,
			visible: err.getClientRects().length > 0 && cs.visibility !== "hidden" && cs.display !== "none",
			invalid: input.getAttribute("aria-invalid") || "",
			describedby: input.getAttribute("aria-describedby") || ""
		};
	})("`+field+`")`)
	if !strings.Contains(" "+st.DescribedBy+" ", " "+field+"-erro ") {
		t.Errorf("#%s aria-describedby %q does not name #%s-erro", field, st.DescribedBy, field)
	}
	if want == "" {
		if st.Text != "" || st.Invalid == "true" || st.Visible {
			t.Errorf("#%s: unexpected error %+v", field, st)
		}
		return
	}
	if st.Text != want {
		t.Errorf("#%s-erro says %q, want %q", field, st.Text, want)
	}
	if !st.Visible {
		t.Errorf("#%s-erro is not visible", field)
	}
	if st.Invalid != "true" {
		t.Errorf("#%s aria-invalid=%q, want true", field, st.Invalid)
	}
	// What a screen reader gets: the field is invalid and described by the error.
	ax := tb.axNode(field)
	if inv := axProperty(ax, "invalid"); inv != "true" {
		t.Errorf("#%s: accessibility invalid=%q, want true", field, inv)
	}
	if d := axString(ax.Description); !strings.Contains(d, want) {
		t.Errorf("#%s: accessible description %q does not hold the error", field, d)
	}
}

// TestWithoutJavaScript sends the form with script execution off: the
// browser makes the plain form post, and the api answers with its HTML
// confirmation page (202) with the id; the status page it links to reaches
// "enviada" by itself (meta refresh).
func TestWithoutJavaScript(t *testing.T) {
	s, tb := start(t, tabOptions{noJavaScript: true})
	tb.open()
	// The script did not run: no counter text, and the browser validates
	// required fields itself, so an empty form is not sent.
	if c := tb.text("assunto-contador"); c != "" {
		t.Fatalf("the page's script ran with JavaScript off (counter %q)", c)
	}
	tb.do(chromedp.Click(chromedp.ID("enviar")), chromedp.Sleep(300*time.Millisecond))
	if n := tb.posts("/api"); n != 0 {
		t.Errorf("an empty form was posted %d times without JavaScript", n)
	}

	const assunto = "Sem JavaScript"
	tb.fill(assunto, "Enviada pelo formulário simples.")
	res, err := chromedp.RunResponse(tb.ctx, chromedp.Click(chromedp.ID("enviar")))
	if err != nil {
		t.Fatalf("form post: %v", err)
	}
	if res.Status != http.StatusAccepted {
		t.Fatalf("form post answered %d, want 202", res.Status)
	}
	if n := tb.posts("/api"); n != 1 {
		t.Errorf("%d POSTs to /api, want 1", n)
	}
	tb.do(chromedp.WaitVisible(chromedp.ID("message-id")))
	if h1 := tb.text("message-id"); len(h1) < 10 {
		t.Fatalf("confirmation page id %q", h1)
	}
	id := tb.text("message-id")
	if got := run(tb, chromedp.Text(chromedp.CSS("h1"))); got != "Mensagem na fila!" {
		t.Errorf("confirmation heading %q", got)
	}
	if got := tb.text("message-assunto"); got != assunto {
		t.Errorf("confirmation shows subject %q", got)
	}
	if lang := eval[string](tb, `document.documentElement.lang`); lang != "pt-BR" {
		t.Errorf("confirmation page lang %q", lang)
	}
	tb.screenshot("04-sem-javascript", "")

	// The link to the status page; the page refreshes itself until final.
	tb.do(chromedp.Click(chromedp.ID("status-link")))
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, _ := chromedp.Run(tb.ctx, chromedp.Evaluate[string](`(function () { var e = document.getElementById("message-status"); return e ? e.dataset.status + "|" + e.textContent : ""; })()`))
		if st == "sent|enviada" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status page says %q, want sent|enviada", st)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := s.WaitStatus(id, "sent"); got.Attempts != 1 {
		t.Errorf("attempts %d", got.Attempts)
	}
	if mails := waitMail(t, s, assunto); len(mails) != 1 {
		t.Errorf("%d mails in Mailpit, want 1", len(mails))
	}
}

// TestDoubleClickSendsOnce double-clicks "Enviar !" as an impatient person
// does (two presses, the second with clickCount 2): one POST, one row, one
// mail.
func TestDoubleClickSendsOnce(t *testing.T) {
	s, tb := start(t, tabOptions{})
	tb.open()
	eval[bool](tb, `(function () {
		window.__presses = 0;
		window.addEventListener("pointerdown", function () { window.__presses++; }, true);
		return true;
	})()`)
	const assunto = "Clique duplo"
	tb.fill(assunto, "Dois cliques, um e-mail.")

	type box struct{ X, Y float64 }
	c := eval[box](tb, `(function () { var r = document.getElementById("enviar").getBoundingClientRect(); return {X: r.x + r.width / 2, Y: r.y + r.height / 2}; })()`)
	press := func(n int) chromedp.Action[chromedp.Void] {
		return chromedp.MouseClickXY(c.X, c.Y, chromedp.ClickCount(n), chromedp.ButtonType(input.MouseButtonLeft))
	}
	tb.do(press(1), press(2))
	if n := eval[int](tb, `window.__presses`); n != 2 {
		t.Errorf("the page saw %d presses, want 2", n)
	}
	if st := tb.waitFinal(); st != "sent" {
		t.Fatalf("final status %s", st)
	}
	// Give a duplicate time to arrive, were there one.
	time.Sleep(time.Second)
	if n := tb.posts("/api/messages"); n != 1 {
		t.Errorf("%d POSTs, want 1", n)
	}
	if n := s.CountRows(); n != 1 {
		t.Errorf("%d rows, want 1", n)
	}
	if mails := waitMail(t, s, assunto); len(mails) != 1 {
		t.Errorf("%d mails, want 1", len(mails))
	}
}

// TestEmojiCountLikeTheAPI types emoji, characters outside the BMP that
// are two UTF-16 code units each (what maxlength and value.length count)
// but one Unicode character for the api: 250 in the message fill it
// exactly, the counter says so and the message is sent; 251 are refused by
// the page inline, as the api would, and nothing is sent. Without
// JavaScript the browser sends the 250 too.
func TestEmojiCountLikeTheAPI(t *testing.T) {
	s, tb := start(t, tabOptions{})
	const emoji = "🙂"
	full, over := strings.Repeat(emoji, 250), strings.Repeat(emoji, 251)

	tb.open()
	tb.fill("Emoji no limite", full)
	if got := eval[int](tb, `[...document.getElementById("mensagem").value].length`); got != 250 {
		t.Fatalf("the field holds %d characters after typing 250 emoji, want 250", got)
	}
	if got := tb.text("mensagem-contador"); got != "(250/250)" {
		t.Errorf("counter %q, want (250/250)", got)
	}
	checkFieldError(t, tb, "mensagem", "")
	tb.do(chromedp.Click(chromedp.ID("enviar")))
	if st := tb.waitFinal(); st != "sent" {
		t.Fatalf("final status %s, want sent (status text %q)", st, tb.text("status-texto"))
	}
	var stored string
	s.QueryRow("SELECT mensagem FROM emails WHERE id = $1", []any{tb.text("message-id")}, &stored)
	if stored != full {
		t.Errorf("stored %d characters, want the 250 emoji", len([]rune(stored)))
	}

	tb.open()
	postsBefore := tb.posts("/api/messages")
	tb.fill("Emoji demais", over)
	// The page says so while typing, before any send.
	checkFieldError(t, tb, "mensagem", "A mensagem deve ter no máximo 250 caracteres.")
	if got := tb.text("mensagem-contador"); got != "(251/250)" {
		t.Errorf("counter %q, want (251/250)", got)
	}
	tb.do(chromedp.Click(chromedp.ID("enviar")))
	if got := tb.text("status-texto"); got != "Corrija os campos indicados." {
		t.Errorf("status text %q, want the summary", got)
	}
	checkFieldError(t, tb, "mensagem", "A mensagem deve ter no máximo 250 caracteres.")
	if n := tb.posts("/api/messages") - postsBefore; n != 0 {
		t.Errorf("the page sent %d POSTs for 251 emoji, want 0", n)
	}
	// Deleting one brings it back under the limit: the error goes.
	tb.do(chromedp.SendKeys(chromedp.ID("mensagem"), kb.Backspace))
	checkFieldError(t, tb, "mensagem", "")

	t.Run("without JavaScript", func(t *testing.T) {
		nojs := newTab(t, s, tabOptions{noJavaScript: true})
		nojs.open()
		nojs.fill("Emoji sem JavaScript", full)
		res, err := chromedp.RunResponse(nojs.ctx, chromedp.Click(chromedp.ID("enviar")))
		if err != nil {
			t.Fatalf("form post: %v", err)
		}
		if res.Status != http.StatusAccepted {
			t.Fatalf("form post answered %d, want 202", res.Status)
		}
		var stored string
		s.QueryRow("SELECT mensagem FROM emails WHERE assunto = $1", []any{"Emoji sem JavaScript"}, &stored)
		if stored != full {
			t.Errorf("stored %d characters, want the 250 emoji", len([]rune(stored)))
		}
	})
}
