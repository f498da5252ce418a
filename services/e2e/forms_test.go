package e2e

import (
	"bytes"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"
	"testing"
)

// formPart is one part of a multipart body: a text field, or a file when
// filename is set.
type formPart struct {
	name, value, filename, contentType string
}

// multipartForm builds a multipart/form-data body as curl -F does.
func multipartForm(t *testing.T, parts ...formPart) (contentType, body string) {
	t.Helper()
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	// Quotes and backslashes escaped, as mime/multipart's CreateFormFile
	// does.
	quoted := strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		disposition := `form-data; name="` + quoted(p.name) + `"`
		if p.filename != "" {
			disposition += `; filename="` + quoted(p.filename) + `"`
		}
		h.Set("Content-Disposition", disposition)
		if p.contentType != "" {
			h.Set("Content-Type", p.contentType)
		}
		pw, err := w.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		pw.Write([]byte(p.value))
	}
	w.Close()
	return w.FormDataContentType(), b.String()
}

// Forms as browsers and curl send them, through nginx: multipart
// (curl -F, enctype="multipart/form-data") and declared charsets are
// accepted with the urlencoded form's answers and limits; files, unknown
// charsets and bytes invalid in their charset are refused, nothing stored.
func TestFormEncodingsThroughNginx(t *testing.T) {
	s := startStack(t, stackOptions{})
	stored := func(t *testing.T, id string) (assunto, mensagem string) {
		t.Helper()
		s.queryRow("SELECT assunto, mensagem FROM emails WHERE id = $1", []any{id}, &assunto, &mensagem)
		return
	}
	idOf := func(res *http.Response) string {
		return strings.TrimPrefix(res.Header.Get("Location"), "/api/messages/")
	}

	t.Run("curl -F: HTML page, then the mail", func(t *testing.T) {
		ct, body := multipartForm(t, formPart{name: "assunto", value: "Oi"}, formPart{name: "mensagem", value: "Teste 🙂\r\nlinha 2"})
		res, page := s.request("POST", "/api", ct, body)
		if res.StatusCode != http.StatusAccepted || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("got %d %s, want 202 and the HTML page\n%s", res.StatusCode, res.Header.Get("Content-Type"), page)
		}
		id := idOf(res)
		if a, m := stored(t, id); a != "Oi" || m != "Teste 🙂\nlinha 2" {
			t.Errorf("stored %q %q", a, m)
		}
		s.waitStatus(id, "sent")
		if mail, n := s.mailByMessageID(s.messageID(id)); n != 1 || mail.Subject != "Oi" {
			t.Errorf("mail: got %d with subject %q, want 1 with Oi", n, mail.Subject)
		}
	})
	t.Run("multipart to /api/messages as JSON", func(t *testing.T) {
		ct, body := multipartForm(t, formPart{name: "assunto", value: "json"}, formPart{name: "mensagem", value: strings.Repeat("🙂", 250)},
			formPart{name: "enviar", value: "Enviar !"}) // extra fields are ignored
		res, out := s.request("POST", "/api/messages", ct, body, "Accept", "application/json")
		if res.StatusCode != http.StatusAccepted || !strings.Contains(out, `"status":"queued"`) {
			t.Fatalf("got %d %s, want 202 queued", res.StatusCode, out)
		}
	})
	t.Run("charset=ISO-8859-1 is windows-1252", func(t *testing.T) {
		res, out := s.request("POST", "/api/messages", formType+"; charset=ISO-8859-1", "assunto=Caf%E9&mensagem=%80+5",
			"Accept", "application/json")
		if res.StatusCode != http.StatusAccepted {
			t.Fatalf("got %d %s, want 202", res.StatusCode, out)
		}
		if a, m := stored(t, idOf(res)); a != "Café" || m != "€ 5" {
			t.Errorf("stored %q %q, want Café and € 5", a, m)
		}
	})
	t.Run("_charset_ in a multipart form", func(t *testing.T) {
		ct, body := multipartForm(t, formPart{name: "assunto", value: "a\xe7\xe3o"}, formPart{name: "mensagem", value: "x"},
			formPart{name: "_charset_", value: "windows-1252"})
		res, out := s.request("POST", "/api", ct, body)
		if res.StatusCode != http.StatusAccepted {
			t.Fatalf("got %d, want 202\n%s", res.StatusCode, out)
		}
		if a, _ := stored(t, idOf(res)); a != "ação" {
			t.Errorf("stored %q, want ação", a)
		}
	})

	refusals := []struct {
		name          string
		contentType   string
		body          string
		status        int
		codes         map[string]string
		wantError     string // in the JSON error
		wantPageLabel string // in the pt-BR page
	}{
		{name: "unknown charset", contentType: formType + "; charset=x-klingon", body: "assunto=a&mensagem=b",
			status: 415, wantError: `charset "x-klingon" is not supported`, wantPageLabel: "não é suportada"},
		{name: "bytes invalid in the charset", contentType: formType + "; charset=shift_jis", body: "assunto=%82&mensagem=b",
			status: 400, codes: map[string]string{"assunto": "invalid_encoding"}, wantPageLabel: "Assunto: contém bytes inválidos"},
		{name: "invalid UTF-8 in a part", body: "\xff", status: 400, codes: map[string]string{"mensagem": "invalid_utf8"},
			wantPageLabel: "Mensagem: contém caracteres inválidos"},
		{name: "file part", status: 415, wantError: `part "foto" is a file`, wantPageLabel: "é um arquivo"},
		{name: "over-long subject in a part", body: strings.Repeat("ç", 101), status: 400,
			codes: map[string]string{"assunto": "too_long"}, wantPageLabel: "Assunto: texto longo demais"},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			ct, body := tt.contentType, tt.body
			switch tt.name {
			case "invalid UTF-8 in a part":
				ct, body = multipartForm(t, formPart{name: "assunto", value: "a"}, formPart{name: "mensagem", value: tt.body})
			case "file part":
				ct, body = multipartForm(t, formPart{name: "assunto", value: "a"}, formPart{name: "mensagem", value: "b"},
					formPart{name: "foto", value: "GIF89a", filename: "gato.gif", contentType: "image/gif"})
			case "over-long subject in a part":
				ct, body = multipartForm(t, formPart{name: "assunto", value: tt.body}, formPart{name: "mensagem", value: "b"})
			}
			e := s.postRejected(t, ct, body, tt.status, tt.codes)
			if !strings.Contains(e.Error, tt.wantError) {
				t.Errorf("error: got %q, want %q", e.Error, tt.wantError)
			}
			res, page := s.request("POST", "/api", ct, body, "Origin", s.URL)
			if res.StatusCode != tt.status || !strings.Contains(page, tt.wantPageLabel) {
				t.Errorf("page: got %d, want %d saying %q\n%s", res.StatusCode, tt.status, tt.wantPageLabel, page)
			}
		})
	}
	t.Run("multipart over 64 KiB is refused by nginx", func(t *testing.T) {
		before := s.countRows()
		ct, body := multipartForm(t, formPart{name: "assunto", value: "a"}, formPart{name: "mensagem", value: "b"},
			formPart{name: "ignorado", value: strings.Repeat("x", 70<<10)})
		res, out := s.request("POST", "/api/messages", ct, body, "Accept", "application/json")
		if res.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("got %d, want 413\n%.300s", res.StatusCode, out)
		}
		if n := s.countRows() - before; n != 0 {
			t.Errorf("rows stored: got %d, want 0", n)
		}
	})
}
