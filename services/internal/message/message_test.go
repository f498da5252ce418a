package message

import (
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		in   Input
		want Problems
	}{
		{"valid", Input{"Olá", "Tudo bem?"}, Problems{}},
		{"both missing", Input{"", ""}, Problems{"assunto": CodeRequired, "mensagem": CodeRequired}},
		{"blank subject", Input{" \u00a0 ", "x"}, Problems{"assunto": CodeBlank}},
		{"blank body", Input{"x", "\n\t "}, Problems{"mensagem": CodeBlank}},
		{"subject at the limit", Input{strings.Repeat("ç", 100), "x"}, Problems{}},
		{"subject over the limit", Input{strings.Repeat("ç", 101), "x"}, Problems{"assunto": CodeTooLong}},
		{"body at the limit in emoji", Input{"x", strings.Repeat("🙂", 250)}, Problems{}},
		{"body over the limit", Input{"x", strings.Repeat("a", 251)}, Problems{"mensagem": CodeTooLong}},
		{"CR in subject", Input{"a\rb", "x"}, Problems{"assunto": CodeControlChars}},
		{"LF in subject", Input{"a\nBcc: x@example.com", "x"}, Problems{"assunto": CodeControlChars}},
		{"tab in subject", Input{"a\tb", "x"}, Problems{"assunto": CodeControlChars}},
		{"line separator in subject", Input{"a\u2028b", "x"}, Problems{"assunto": CodeControlChars}},
		{"NUL in body", Input{"x", "a\x00b"}, Problems{"mensagem": CodeControlChars}},
		{"escape in body", Input{"x", "a\x1b[31mb"}, Problems{"mensagem": CodeControlChars}},
		{"line breaks and tabs in body", Input{"x", "a\nb\r\n\tc"}, Problems{}},
		{"invalid UTF-8", Input{"\xff", "\xc3"}, Problems{"assunto": CodeInvalidUTF8, "mensagem": CodeInvalidUTF8}},
		{"markup is just text", Input{"<script>alert(1)</script>", "' OR 1=1; --"}, Problems{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.in.Validate()
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for f, c := range tt.want {
				if got[f] != c {
					t.Errorf("%s: got %v, want %v", f, got[f], c)
				}
			}
		})
	}
}

func TestNormalizeCountsCRLFAsOneCharacter(t *testing.T) {
	// A textarea at its 250-character limit with line breaks submits CRLF.
	body := strings.Repeat("ab\r\n", 83) + "a" // 83*3+1 = 250 characters as typed
	in := Input{"x", body}.Normalize()
	if p := in.Validate(); len(p) != 0 {
		t.Errorf("got %v, want no problems", p)
	}
	if strings.Contains(in.Mensagem, "\r") {
		t.Errorf("got %q, want line breaks as \\n", in.Mensagem)
	}
}

func TestCodeMessageNamesTheField(t *testing.T) {
	for _, c := range []Code{CodeRequired, CodeBlank, CodeTooLong, CodeInvalidUTF8, CodeInvalidEncoding, CodeControlChars} {
		for _, f := range []string{"assunto", "mensagem"} {
			if got := c.Message(f); !strings.HasPrefix(got, f+" ") {
				t.Errorf("%s/%s: got %q, want it to start with the field", c, f, got)
			}
		}
	}
	if got := CodeTooLong.Message("mensagem"); !strings.Contains(got, "250") {
		t.Errorf("got %q, want the limit 250", got)
	}
	if got := CodeTooLong.Message("assunto"); !strings.Contains(got, "100") {
		t.Errorf("got %q, want the limit 100", got)
	}
}

func TestStatusFinal(t *testing.T) {
	for s, want := range map[Status]bool{StatusQueued: false, StatusSending: false, StatusFailed: false, StatusSent: true, StatusDead: true} {
		if got := s.Final(); got != want {
			t.Errorf("%s: got %v, want %v", s, got, want)
		}
	}
}
