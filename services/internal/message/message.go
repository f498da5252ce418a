package message

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Field limits, in Unicode characters, as in the seed's table.
const (
	MaxAssunto  = 100
	MaxMensagem = 250
)

// Input is a submission as it arrives from the form or a JSON client.
type Input struct {
	Assunto  string `json:"assunto"`
	Mensagem string `json:"mensagem"`
}

// Code names one kind of validation problem. Clients (the page's script)
// translate codes; the API also sends an English message.
type Code string

// The validation problem codes.
const (
	CodeRequired    Code = "required"
	CodeBlank       Code = "blank"
	CodeTooLong     Code = "too_long"
	CodeInvalidUTF8 Code = "invalid_utf8"
	// CodeInvalidEncoding: a form field's bytes are not valid in the
	// charset the request declared (other than UTF-8).
	CodeInvalidEncoding Code = "invalid_encoding"
	CodeControlChars    Code = "control_chars"
)

// Problems maps a field name (assunto, mensagem) to what is wrong with it.
type Problems map[string]Code

// Normalize returns in with the body's line breaks folded to \n, as a
// browser's textarea counts them.
func (in Input) Normalize() Input {
	in.Mensagem = strings.ReplaceAll(in.Mensagem, "\r\n", "\n")
	return in
}

// Validate reports every problem with in; an empty map means it may be
// stored. Validate expects a normalized input.
func (in Input) Validate() Problems {
	p := Problems{}
	if c, ok := check(in.Assunto, MaxAssunto, false); !ok {
		p["assunto"] = c
	}
	if c, ok := check(in.Mensagem, MaxMensagem, true); !ok {
		p["mensagem"] = c
	}
	return p
}

func check(s string, limit int, multiline bool) (Code, bool) {
	switch {
	case s == "":
		return CodeRequired, false
	case !utf8.ValidString(s):
		return CodeInvalidUTF8, false
	case hasControl(s, multiline):
		return CodeControlChars, false
	case strings.TrimSpace(s) == "":
		return CodeBlank, false
	case utf8.RuneCountInString(s) > limit:
		return CodeTooLong, false
	}
	return "", true
}

// hasControl reports control characters. A subject allows none at all: a CR
// or LF there would let a sender inject mail headers. A body allows line
// breaks and tabs.
func hasControl(s string, multiline bool) bool {
	for _, r := range s {
		if multiline && (r == '\n' || r == '\r' || r == '\t') {
			continue
		}
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return true
		}
	}
	return false
}

// Message returns an English sentence for a problem with field.
func (c Code) Message(field string) string {
	switch c {
	case CodeRequired:
		return field + " is required"
	case CodeBlank:
		return field + " must not be blank"
	case CodeTooLong:
		limit := MaxAssunto
		if field == "mensagem" {
			limit = MaxMensagem
		}
		return field + " must be at most " + strconv.Itoa(limit) + " characters"
	case CodeInvalidUTF8:
		return field + " is not valid UTF-8"
	case CodeInvalidEncoding:
		return field + " has bytes that are not valid in the declared charset"
	case CodeControlChars:
		if field == "assunto" {
			return field + " must not contain line breaks or control characters"
		}
		return field + " must not contain control characters"
	}
	return field + " is invalid"
}
