package mail

import (
	"mime"
	"strings"
	"testing"
)

// A subject that looks like an encoded word is encoded, so readers decode
// it back to the literal text; anything else is left to go-mail.
func TestEncodeWordsRoundTrip(t *testing.T) {
	for _, s := range []string{
		"=?UTF-8?Q?oi=0D=0ABcc:_evil@example.com?=",
		"=?=?= ?Q? =41 _ =",
		strings.Repeat("ção🙂=?", 14),
		"a",
	} {
		enc := encodeWords(s)
		for _, line := range strings.Split(enc, "\r\n") {
			if len(line) > 76 {
				t.Errorf("%q: line %q longer than 76", s, line)
			}
			if strings.ContainsAny(strings.TrimPrefix(line, " "), " \r\n") {
				t.Errorf("%q: line %q holds more than one word", s, line)
			}
		}
		got, err := new(mime.WordDecoder).DecodeHeader(strings.ReplaceAll(enc, "\r\n", ""))
		if err != nil || got != s {
			t.Errorf("encodeWords(%q) = %q decodes to %q (%v)", s, enc, got, err)
		}
	}
}
