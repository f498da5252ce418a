package message

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzValidate checks the validator's promises on any input: it never
// panics, and whatever it accepts is valid UTF-8 within the limits, with
// no control character in the subject (no header injection) and none but
// line breaks and tabs in the body.
func FuzzValidate(f *testing.F) {
	f.Add("Olá", "Tudo bem?")
	f.Add("a\r\nBcc: x@example.com", "b")
	f.Add("\xff\xfe", "\x00")
	f.Add(strings.Repeat("🙂", 100), strings.Repeat("ç\r\n", 125))
	f.Add(" ", "\u2028")
	f.Fuzz(func(t *testing.T, assunto, mensagem string) {
		in := Input{Assunto: assunto, Mensagem: mensagem}.Normalize()
		p := in.Validate()
		if _, bad := p["assunto"]; !bad {
			if !utf8.ValidString(in.Assunto) || utf8.RuneCountInString(in.Assunto) > MaxAssunto ||
				strings.TrimSpace(in.Assunto) == "" || strings.ContainsFunc(in.Assunto, unicode.IsControl) {
				t.Fatalf("accepted assunto %q", in.Assunto)
			}
		}
		if _, bad := p["mensagem"]; !bad {
			if !utf8.ValidString(in.Mensagem) || utf8.RuneCountInString(in.Mensagem) > MaxMensagem ||
				strings.TrimSpace(in.Mensagem) == "" ||
				strings.ContainsFunc(in.Mensagem, func(r rune) bool {
					return unicode.IsControl(r) && r != '\n' && r != '\r' && r != '\t'
				}) {
				t.Fatalf("accepted mensagem %q", in.Mensagem)
			}
		}
		for field, code := range p {
			if code.Message(field) == "" {
				t.Fatalf("no message for %s/%s", field, code)
			}
		}
	})
}
