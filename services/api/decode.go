package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"unicode/utf8"

	"github.com/carteiro/carteiro/services/internal/message"
)

// maxBody is the largest request body accepted (nginx enforces the same).
const maxBody = 64 << 10

// decodeInput reads a submission from a form post or a JSON body. Problems
// found while decoding (a field that is not UTF-8) come back beside the
// input, to be reported with the validation's.
func decodeInput(w http.ResponseWriter, r *http.Request) (message.Input, message.Problems, *apiError) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || (mt != "application/json" && mt != "application/x-www-form-urlencoded") {
		return message.Input{}, nil, errUnsupportedType
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		if errors.As(err, new(*http.MaxBytesError)) {
			return message.Input{}, nil, errTooLarge
		}
		return message.Input{}, nil, errBadRequest("could not read the request body")
	}
	if mt == "application/json" {
		return decodeJSON(body)
	}
	return decodeForm(body)
}

func decodeForm(body []byte) (message.Input, message.Problems, *apiError) {
	values, err := url.ParseQuery(string(body))
	if err != nil {
		return message.Input{}, nil, errBadRequest("malformed form body: " + err.Error())
	}
	return message.Input{Assunto: values.Get("assunto"), Mensagem: values.Get("mensagem")}, nil, nil
}

// decodeJSON decodes {"assunto": "...", "mensagem": "..."}. encoding/json
// silently replaces invalid UTF-8 with U+FFFD, so each raw field is checked
// first and reported as invalid_utf8 rather than stored altered.
func decodeJSON(body []byte) (message.Input, message.Problems, *apiError) {
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&raw); err != nil {
		return message.Input{}, nil, errBadRequest("malformed JSON: " + err.Error())
	}
	if dec.More() {
		return message.Input{}, nil, errBadRequest("malformed JSON: more than one value in the body")
	}
	if raw == nil {
		return message.Input{}, nil, errBadRequest("malformed JSON: want an object with assunto and mensagem")
	}
	var in message.Input
	problems := message.Problems{}
	for name, v := range raw {
		var dst *string
		switch name {
		case "assunto":
			dst = &in.Assunto
		case "mensagem":
			dst = &in.Mensagem
		default:
			return message.Input{}, nil, errBadRequest("unknown field " + quote(name) + ": want only assunto and mensagem")
		}
		if !utf8.Valid(v) {
			problems[name] = message.CodeInvalidUTF8
			continue
		}
		if string(v) == "null" {
			continue // same as missing: reported as required
		}
		if err := json.Unmarshal(v, dst); err != nil {
			return message.Input{}, nil, errBadRequest(name + " must be a string")
		}
	}
	return in, problems, nil
}

// quote quotes a client-supplied name for an error message.
func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
