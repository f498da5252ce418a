package main

import (
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/htmlindex"
)

// charset is a character encoding declared for form text, resolved the
// way browsers label and decode it: by the WHATWG Encoding Standard
// (https://encoding.spec.whatwg.org/#names-and-labels), through
// golang.org/x/text/encoding/htmlindex. So "ISO-8859-1", "latin1" and
// "us-ascii" all mean windows-1252, and "utf8" means UTF-8.
type charset struct {
	// name is the Encoding Standard's name of the encoding, e.g.
	// "windows-1252".
	name string
	// enc decodes it; nil for UTF-8, which needs no decoding (its
	// validity is the validator's invalid_utf8). The zero charset is
	// UTF-8.
	enc encoding.Encoding
	// replacementEncodable: U+FFFD has an encoding in this charset (the
	// UTF-16s, gb18030), so a U+FFFD in the decoded text may have been
	// sent rather than stand for an invalid byte sequence.
	replacementEncodable []byte
}

// lookupCharset resolves a charset label (Content-Type's charset
// parameter, the _charset_ field). A label the Encoding Standard does not
// know, or one it maps to its "replacement" encoding (ISO-2022-KR,
// HZ-GB-2312, …: labels that must never be decoded), is a 415 naming it.
func lookupCharset(label string) (charset, *apiError) {
	enc, err := htmlindex.Get(label)
	if err != nil || enc == encoding.Replacement {
		return charset{}, errUnknownCharset(label)
	}
	name, err := htmlindex.Name(enc)
	if err != nil {
		return charset{}, errUnknownCharset(label)
	}
	if name == "utf-8" {
		return charset{name: name}, nil
	}
	c := charset{name: name, enc: enc}
	if b, err := enc.NewEncoder().Bytes([]byte(string(utf8.RuneError))); err == nil {
		c.replacementEncodable = b
	}
	return c, nil
}

// decode returns s, a field's bytes in the charset, as UTF-8. ok is false
// when s holds a byte sequence that is not valid in the charset (the
// decoder turned it into U+FFFD). For UTF-8, s is returned unchanged and ok
// is true: the validator reports invalid UTF-8 itself.
func (c charset) decode(s string) (_ string, ok bool) {
	if c.enc == nil {
		return s, true
	}
	out, err := c.enc.NewDecoder().String(s)
	if err != nil {
		return "", false
	}
	replaced := strings.Count(out, string(utf8.RuneError))
	if replaced == 0 {
		return out, true
	}
	// Every U+FFFD must have been sent as one.
	if c.replacementEncodable != nil && strings.Count(s, string(c.replacementEncodable)) == replaced {
		return out, true
	}
	return "", false
}
