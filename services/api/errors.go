package main

import (
	"net/http"

	"github.com/carteiro/carteiro/services/internal/message"
)

// apiError is an answer other than success: a status, an English sentence
// for API clients, and per-field problems for validation failures.
type apiError struct {
	Status   int
	Message  string
	Problems message.Problems
	// RetryAfter, in seconds, is sent for 503s.
	RetryAfter string
	// Page, when set, is the pt-BR sentence the HTML error page shows
	// instead of its general one for the status.
	Page string
}

func (e *apiError) Error() string { return e.Message }

var (
	errForbiddenCrossSite = &apiError{Status: http.StatusForbidden,
		Message: "cross-site request rejected: post the form from this site"}
	errUnsupportedType = &apiError{Status: http.StatusUnsupportedMediaType,
		Message: "Content-Type must be application/json, application/x-www-form-urlencoded or multipart/form-data"}
	errTooLarge = &apiError{Status: http.StatusRequestEntityTooLarge,
		Message: "request body is larger than 64 KiB"}
	errUnavailable = &apiError{Status: http.StatusServiceUnavailable, RetryAfter: "5",
		Message: "the message store is unavailable; nothing was stored, try again shortly"}
	errNotFound    = &apiError{Status: http.StatusNotFound, Message: "message not found"}
	errNoRoute     = &apiError{Status: http.StatusNotFound, Message: "not found"}
	errKeyInFlight = &apiError{Status: http.StatusConflict, RetryAfter: "1",
		Message: "a request with this Idempotency-Key is still being processed; retry shortly"}
	errKeyReused = &apiError{Status: http.StatusUnprocessableEntity,
		Message: "this Idempotency-Key was already used with a different message"}
	errInternal = &apiError{Status: http.StatusInternalServerError, Message: "internal error"}
	// errOutcomeUnknown: the database stopped answering while it committed
	// the message, and never said whether it did. Never a 503, which means
	// "not stored".
	errOutcomeUnknown = &apiError{Status: http.StatusInternalServerError,
		Message: "the message store stopped answering while committing: the message may or may not be stored; resend it with the same Idempotency-Key to be sure",
		Page:    "O serviço parou de responder enquanto registrava a mensagem, e não dá para saber se ela foi registrada. Se enviar de novo, ela pode chegar duas vezes."}
	// errClientGone is recorded when the client closed the connection
	// before the answer (nginx's 499 convention); nobody receives it.
	errClientGone = &apiError{Status: 499, Message: "client closed the request"}
)

func errBadRequest(msg string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Message: msg}
}

// errUnknownCharset is the answer to a charset label the WHATWG Encoding
// Standard does not decode (see lookupCharset).
func errUnknownCharset(label string) *apiError {
	return &apiError{Status: http.StatusUnsupportedMediaType,
		Message: "charset " + quote(label) + " is not supported: declare a label of the WHATWG Encoding Standard, such as utf-8, or none (UTF-8)",
		Page:    "A codificação de caracteres " + quote(label) + " não é suportada. Envie o formulário em UTF-8."}
}

// errFilePart is the answer to a multipart form carrying a file (a part
// with a filename, or whose Content-Type is not text/plain; why says
// which): carteiro takes two text fields, never uploads.
func errFilePart(name, why string) *apiError {
	return &apiError{Status: http.StatusUnsupportedMediaType,
		Message: "multipart part " + quote(name) + " is a file (" + why + "): files are not accepted, only the text fields assunto and mensagem",
		Page:    "O campo " + quote(name) + " é um arquivo: anexos não são aceitos, só os campos de texto Assunto e Mensagem."}
}

func errInvalid(p message.Problems) *apiError {
	return &apiError{Status: http.StatusBadRequest, Message: "invalid message", Problems: p}
}
