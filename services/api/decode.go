package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"unicode/utf8"

	"github.com/carteiro/carteiro/services/internal/message"
)

// maxBody is the largest request body accepted (nginx enforces the same),
// whatever its content type: a multipart body is read through the same
// limit, so no part can make the api hold more.
const maxBody = 64 << 10

// charsetFieldName is the form field in which browsers send the charset
// they encoded the form in (HTML "Form submission", RFC 7578 section 4.6).
const charsetFieldName = "_charset_"

// isFormField reports whether a form field is one a submission uses; any
// other is ignored, in a urlencoded body as in a multipart one (a browser
// form may carry a submit button's name or a token of its own).
func isFormField(name string) bool { return name == "assunto" || name == "mensagem" }

// decodeInput reads a submission from a JSON body, a urlencoded form or a
// multipart form. Problems found while decoding (a field that is not valid
// in its charset) come back beside the input, to be reported with the
// validation's.
func decodeInput(w http.ResponseWriter, r *http.Request) (message.Input, message.Problems, *apiError) {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return message.Input{}, nil, errUnsupportedType
	}
	body := http.MaxBytesReader(w, r.Body, maxBody)
	switch mt {
	case "application/json":
		b, aerr := readBody(body)
		if aerr != nil {
			return message.Input{}, nil, aerr
		}
		return decodeJSON(b)
	case "application/x-www-form-urlencoded":
		b, aerr := readBody(body)
		if aerr != nil {
			return message.Input{}, nil, aerr
		}
		f, aerr := parseURLEncoded(b, params["charset"])
		if aerr != nil {
			return message.Input{}, nil, aerr
		}
		return f.input()
	case "multipart/form-data":
		f, aerr := parseMultipart(body, params)
		if aerr != nil {
			return message.Input{}, nil, aerr
		}
		return f.input()
	}
	return message.Input{}, nil, errUnsupportedType
}

// readBody reads the whole (size-limited) body.
func readBody(body io.Reader) ([]byte, *apiError) {
	b, err := io.ReadAll(body)
	if err != nil {
		return nil, bodyError(err)
	}
	return b, nil
}

// bodyError is the answer to a failed read of the body: 413 past the limit.
func bodyError(err error) *apiError {
	if errors.As(err, new(*http.MaxBytesError)) {
		return errTooLarge
	}
	return errBadRequest("could not read the request body")
}

// form is a form's fields as sent, before their text is decoded.
type form struct {
	// fields holds the first assunto and mensagem sent, as bytes in their
	// charset.
	fields map[string]formField
	// declared is the request's Content-Type charset parameter, "" when
	// none; charsetField the value of the _charset_ field, "" when none.
	declared, charsetField string
}

// formField is one text field: its bytes, and its own charset (a multipart
// part's Content-Type charset; "" when it has none).
type formField struct {
	value   string
	charset string
}

// input decodes the fields to UTF-8. A field's charset is the most
// specific declaration there is: its own (a multipart part's
// Content-Type), the request's Content-Type, the _charset_ field, else
// UTF-8. An unknown charset is a 415; bytes invalid in a declared charset
// are a field problem (invalid_encoding; invalid_utf8 for UTF-8).
func (f form) input() (message.Input, message.Problems, *apiError) {
	var in message.Input
	problems := message.Problems{}
	// In order, so that of two unknown charsets the subject's is named.
	for _, fd := range []struct {
		name string
		dst  *string
	}{{"assunto", &in.Assunto}, {"mensagem", &in.Mensagem}} {
		name, dst := fd.name, fd.dst
		field, ok := f.fields[name]
		if !ok {
			continue // reported as required
		}
		var cs charset // UTF-8 when nothing is declared
		if label := cmp.Or(field.charset, f.declared, f.charsetField); label != "" {
			var aerr *apiError
			if cs, aerr = lookupCharset(label); aerr != nil {
				return message.Input{}, nil, aerr
			}
		}
		if *dst, ok = cs.decode(field.value); !ok {
			problems[name] = message.CodeInvalidEncoding
		}
	}
	return in, problems, nil
}

// parseURLEncoded splits an application/x-www-form-urlencoded body
// (percent-decoding only: the bytes are decoded from their charset later).
func parseURLEncoded(body []byte, declared string) (form, *apiError) {
	values, err := url.ParseQuery(string(body))
	if err != nil {
		return form{}, errBadRequest("malformed form body: " + err.Error())
	}
	f := form{fields: map[string]formField{}, declared: declared, charsetField: values.Get(charsetFieldName)}
	for name, v := range values {
		if isFormField(name) {
			f.fields[name] = formField{value: v[0]}
		}
	}
	return f, nil
}

// parseMultipart reads a multipart/form-data body (RFC 7578) with
// mime/multipart, part by part, within the body's size limit. Text parts
// named assunto, mensagem and _charset_ are kept (the first of each name);
// other text parts are read and ignored. A part that is a file (a filename
// in its Content-Disposition, or a Content-Type other than text/plain) is
// a 415 naming it, whatever its name.
func parseMultipart(body io.Reader, params map[string]string) (form, *apiError) {
	boundary := params["boundary"]
	if boundary == "" {
		return form{}, errBadRequest("malformed multipart body: Content-Type has no boundary")
	}
	f := form{fields: map[string]formField{}, declared: params["charset"]}
	seenCharset := false
	mr := multipart.NewReader(body, boundary)
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return f, nil
		}
		if err != nil {
			return form{}, multipartError(err, "")
		}
		name, charset, aerr := textPart(part)
		if aerr != nil {
			return form{}, aerr
		}
		value, err := io.ReadAll(part)
		if err != nil {
			return form{}, multipartError(err, " (part "+quote(name)+")")
		}
		switch _, known := f.fields[name]; {
		case name == charsetFieldName && !seenCharset:
			f.charsetField, seenCharset = string(value), true
		case isFormField(name) && !known:
			f.fields[name] = formField{value: string(value), charset: charset}
		}
	}
}

// multipartError is the answer to a failed read of a multipart body, where
// names the part: 413 past the size limit, else 400.
func multipartError(err error, where string) *apiError {
	if errors.As(err, new(*http.MaxBytesError)) {
		return errTooLarge
	}
	return errBadRequest("malformed multipart body" + where + ": " + err.Error())
}

// textPart checks that part is a form field holding text and returns its
// name and declared charset.
func textPart(part *multipart.Part) (name, charset string, _ *apiError) {
	disposition, dparams, err := mime.ParseMediaType(part.Header.Get("Content-Disposition"))
	if err != nil || disposition != "form-data" || dparams["name"] == "" {
		return "", "", errBadRequest("malformed multipart body: every part needs Content-Disposition: form-data with a name")
	}
	name = dparams["name"]
	if filename, ok := dparams["filename"]; ok {
		return "", "", errFilePart(name, "filename "+quote(filename))
	}
	if ct := part.Header.Get("Content-Type"); ct != "" {
		mt, cparams, err := mime.ParseMediaType(ct)
		if err != nil || mt != "text/plain" {
			return "", "", errFilePart(name, "Content-Type "+quote(ct))
		}
		charset = cparams["charset"]
	}
	return name, charset, nil
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
