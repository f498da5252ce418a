package main

import (
	"bytes"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"strings"
	"testing"

	"github.com/carteiro/carteiro/services/internal/message"
)

// part is one part of a multipart test body.
type part struct {
	name, value string
	header      map[string]string // extra part headers; Content-Disposition replaces the default
}

// multipartBody builds a multipart/form-data body and its Content-Type.
func multipartBody(t *testing.T, parts ...part) (contentType, body string) {
	t.Helper()
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", `form-data; name="`+p.name+`"`)
		for k, v := range p.header {
			h.Set(k, v)
		}
		pw, err := w.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		pw.Write([]byte(p.value))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return w.FormDataContentType(), b.String()
}

func TestDecodeForms(t *testing.T) {
	const form = "application/x-www-form-urlencoded"
	mp := func(parts ...part) [2]string {
		ct, body := multipartBody(t, parts...)
		return [2]string{ct, body}
	}
	latin1 := map[string]string{"Content-Type": "text/plain; charset=ISO-8859-1"}
	tests := []struct {
		name         string
		req          [2]string // Content-Type, body
		want         message.Input
		wantProblems message.Problems
		wantStatus   int    // of the *apiError; 0 for none
		wantError    string // in its message
	}{
		// urlencoded
		{name: "urlencoded, no charset: UTF-8", req: [2]string{form, "assunto=Caf%C3%A9&mensagem=ol%C3%A1"},
			want: message.Input{Assunto: "Café", Mensagem: "olá"}},
		{name: "ISO-8859-1 means windows-1252", req: [2]string{form + "; charset=ISO-8859-1", "assunto=Caf%E9&mensagem=%80+5"},
			want: message.Input{Assunto: "Café", Mensagem: "€ 5"}},
		{name: "charset label is case-insensitive and trimmed", req: [2]string{form + `; charset=" Latin1 "`, "assunto=Caf%E9&mensagem=x"},
			want: message.Input{Assunto: "Café", Mensagem: "x"}},
		{name: "utf8 label", req: [2]string{form + "; charset=utf8", "assunto=%E2%82%AC&mensagem=x"},
			want: message.Input{Assunto: "€", Mensagem: "x"}},
		{name: "_charset_ field", req: [2]string{form, "_charset_=windows-1252&assunto=Caf%E9&mensagem=a%E7%E3o"},
			want: message.Input{Assunto: "Café", Mensagem: "ação"}},
		{name: "Content-Type charset wins over _charset_", req: [2]string{form + "; charset=utf-8", "_charset_=windows-1252&assunto=Caf%C3%A9&mensagem=x"},
			want: message.Input{Assunto: "Café", Mensagem: "x"}},
		{name: "shift_jis", req: [2]string{form + "; charset=Shift_JIS", "assunto=%82%A0&mensagem=x"},
			want: message.Input{Assunto: "あ", Mensagem: "x"}},
		{name: "invalid bytes in shift_jis", req: [2]string{form + "; charset=shift_jis", "assunto=%82&mensagem=x"},
			want: message.Input{Mensagem: "x"}, wantProblems: message.Problems{"assunto": message.CodeInvalidEncoding}},
		{name: "byte undefined in windows-1252", req: [2]string{form + "; charset=windows-1252", "assunto=a%81&mensagem=x"},
			want: message.Input{Mensagem: "x"}, wantProblems: message.Problems{"assunto": message.CodeInvalidEncoding}},
		{name: "byte undefined in ISO-8859-3", req: [2]string{form + "; charset=ISO-8859-3", "assunto=ok&mensagem=%A5"},
			want: message.Input{Assunto: "ok"}, wantProblems: message.Problems{"mensagem": message.CodeInvalidEncoding}},
		{name: "U+FFFD sent in UTF-16LE is text", req: [2]string{form + "; charset=utf-16le", "assunto=%FD%FF&mensagem=x%00"},
			want: message.Input{Assunto: "\uFFFD", Mensagem: "x"}},
		{name: "lone surrogate in UTF-16LE", req: [2]string{form + "; charset=utf-16le", "assunto=%00%D8&mensagem=x%00"},
			want: message.Input{Mensagem: "x"}, wantProblems: message.Problems{"assunto": message.CodeInvalidEncoding}},
		{name: "declared UTF-8, invalid bytes: left to the validator", req: [2]string{form + "; charset=utf-8", "assunto=%FF&mensagem=x"},
			want: message.Input{Assunto: "\xff", Mensagem: "x"}},
		{name: "unknown charset", req: [2]string{form + "; charset=klingon", "assunto=a&mensagem=b"},
			wantStatus: 415, wantError: `charset "klingon" is not supported`},
		{name: "unknown _charset_", req: [2]string{form, "_charset_=ebcdic&assunto=a&mensagem=b"},
			wantStatus: 415, wantError: `charset "ebcdic"`},
		{name: "replacement encoding label", req: [2]string{form + "; charset=iso-2022-kr", "assunto=a&mensagem=b"},
			wantStatus: 415, wantError: `charset "iso-2022-kr"`},
		{name: "extra fields ignored", req: [2]string{form, "assunto=a&mensagem=b&enviar=Enviar&to=x@example.com"},
			want: message.Input{Assunto: "a", Mensagem: "b"}},
		{name: "first of a repeated field", req: [2]string{form, "assunto=a&assunto=z&mensagem=b"},
			want: message.Input{Assunto: "a", Mensagem: "b"}},

		// multipart
		{name: "multipart text fields", req: mp(part{name: "assunto", value: "Olá"}, part{name: "mensagem", value: "linha 1\r\nlinha 2"}),
			want: message.Input{Assunto: "Olá", Mensagem: "linha 1\r\nlinha 2"}},
		{name: "multipart, fields missing", req: mp(part{name: "outro", value: "x"}),
			want: message.Input{}},
		{name: "multipart, extra text parts ignored", req: mp(part{name: "enviar", value: "Enviar !"}, part{name: "assunto", value: "a"},
			part{name: "mensagem", value: "b"}, part{name: "cc", value: "x@example.com"}),
			want: message.Input{Assunto: "a", Mensagem: "b"}},
		{name: "multipart, first of a repeated field", req: mp(part{name: "assunto", value: "a"}, part{name: "assunto", value: "z"}, part{name: "mensagem", value: "b"}),
			want: message.Input{Assunto: "a", Mensagem: "b"}},
		{name: "multipart part charset", req: mp(part{name: "assunto", value: "Caf\xe9", header: latin1}, part{name: "mensagem", value: "Caf\xc3\xa9"}),
			want: message.Input{Assunto: "Café", Mensagem: "Café"}},
		{name: "multipart _charset_ after the fields", req: mp(part{name: "assunto", value: "Caf\xe9"}, part{name: "mensagem", value: "x"},
			part{name: "_charset_", value: "ISO-8859-1"}),
			want: message.Input{Assunto: "Café", Mensagem: "x"}},
		{name: "multipart part charset wins over _charset_", req: mp(part{name: "_charset_", value: "windows-1252"},
			part{name: "assunto", value: "Caf\xc3\xa9", header: map[string]string{"Content-Type": "text/plain; charset=utf-8"}}, part{name: "mensagem", value: "\xe9"}),
			want: message.Input{Assunto: "Café", Mensagem: "é"}},
		{name: "multipart quoted-printable part", req: mp(part{name: "assunto", value: "Caf=C3=A9", header: map[string]string{"Content-Transfer-Encoding": "quoted-printable"}},
			part{name: "mensagem", value: "x"}),
			want: message.Input{Assunto: "Café", Mensagem: "x"}},
		{name: "multipart unknown part charset", req: mp(part{name: "assunto", value: "a", header: map[string]string{"Content-Type": "text/plain; charset=x-klingon"}}, part{name: "mensagem", value: "b"}),
			wantStatus: 415, wantError: `charset "x-klingon"`},
		{name: "multipart file part", req: mp(part{name: "assunto", value: "a"}, part{name: "mensagem", value: "b"},
			part{name: "foto", value: "\x89PNG", header: map[string]string{"Content-Disposition": `form-data; name="foto"; filename="gato.png"`, "Content-Type": "image/png"}}),
			wantStatus: 415, wantError: `part "foto" is a file (filename "gato.png")`},
		{name: "multipart empty file input", req: mp(part{name: "anexo", header: map[string]string{"Content-Disposition": `form-data; name="anexo"; filename=""`, "Content-Type": "application/octet-stream"}}),
			wantStatus: 415, wantError: `part "anexo" is a file`},
		{name: "multipart field sent as a file", req: mp(part{name: "mensagem", value: "b", header: map[string]string{"Content-Type": "application/octet-stream"}}),
			wantStatus: 415, wantError: `part "mensagem" is a file (Content-Type "application/octet-stream")`},
		{name: "multipart part without a name", req: mp(part{name: "x", header: map[string]string{"Content-Disposition": "form-data"}}),
			wantStatus: 400, wantError: "needs Content-Disposition: form-data with a name"},
		{name: "multipart attachment disposition", req: mp(part{name: "x", header: map[string]string{"Content-Disposition": `attachment; name="assunto"`}}),
			wantStatus: 400, wantError: "malformed multipart body"},
		{name: "multipart without boundary", req: [2]string{"multipart/form-data", "--x\r\n\r\n--x--"},
			wantStatus: 400, wantError: "no boundary"},
		{name: "multipart malformed part header", req: [2]string{"multipart/form-data; boundary=x", "--x\r\nno colon here\r\n\r\nabc\r\n--x--"},
			wantStatus: 400, wantError: "malformed multipart body: "},
		{name: "multipart truncated inside a part", req: [2]string{"multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"assunto\"\r\n\r\nabc"},
			wantStatus: 400, wantError: `malformed multipart body (part "assunto"): unexpected EOF`},
		{name: "multipart with no parts", req: [2]string{"multipart/form-data; boundary=x", "--x--"},
			want: message.Input{}},
		{name: "multipart over 64 KiB in a part", req: mp(part{name: "assunto", value: "a"}, part{name: "mensagem", value: strings.Repeat("b", maxBody)}),
			wantStatus: 413},
		{name: "multipart over 64 KiB in ignored parts", req: mp(part{name: "a", value: strings.Repeat("b", maxBody/2)}, part{name: "b", value: strings.Repeat("b", maxBody/2)}),
			wantStatus: 413},
		{name: "other multipart type", req: [2]string{"multipart/mixed; boundary=x", "--x--"},
			wantStatus: 415, wantError: "Content-Type must be"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/api", strings.NewReader(tt.req[1]))
			r.Header.Set("Content-Type", tt.req[0])
			in, problems, aerr := decodeInput(httptest.NewRecorder(), r)
			if tt.wantStatus != 0 {
				if aerr == nil || aerr.Status != tt.wantStatus || !strings.Contains(aerr.Message, tt.wantError) {
					t.Fatalf("got %+v, want %d with %q", aerr, tt.wantStatus, tt.wantError)
				}
				return
			}
			if aerr != nil {
				t.Fatalf("got %+v, want no error", aerr)
			}
			if in != tt.want {
				t.Errorf("got %+q, want %+q", in, tt.want)
			}
			if len(problems) != len(tt.wantProblems) {
				t.Errorf("problems: got %v, want %v", problems, tt.wantProblems)
			}
			for f, c := range tt.wantProblems {
				if problems[f] != c {
					t.Errorf("problem %s: got %v, want %v", f, problems[f], c)
				}
			}
		})
	}
}
