package main

import (
	"crypto/sha256"
	"net/http"
	"strings"

	"github.com/carteiro/carteiro/services/internal/message"
)

// maxKeyLength bounds an Idempotency-Key; UUIDs need 36.
const maxKeyLength = 255

// idempotencyKey reads the Idempotency-Key header: a structured-field
// string ("…") as the IETF draft writes it, or the same characters bare.
// It returns "" when the header is absent.
func idempotencyKey(r *http.Request) (string, *apiError) {
	values := r.Header.Values("Idempotency-Key")
	if len(values) == 0 {
		return "", nil
	}
	if len(values) > 1 {
		return "", errBadRequest("send one Idempotency-Key header")
	}
	key := strings.TrimSpace(values[0])
	if len(key) >= 2 && key[0] == '"' && key[len(key)-1] == '"' {
		key = key[1 : len(key)-1]
	}
	if key == "" || len(key) > maxKeyLength {
		return "", errBadRequest("Idempotency-Key must be 1 to 255 characters")
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return "", errBadRequest("Idempotency-Key must be printable ASCII without spaces, quotes or backslashes")
		}
	}
	return key, nil
}

// fingerprint identifies a request's content: the same message sent as a
// form or as JSON is the same request.
func fingerprint(in message.Input) []byte {
	h := sha256.New()
	h.Write([]byte(in.Assunto))
	h.Write([]byte{0})
	h.Write([]byte(in.Mensagem))
	return h.Sum(nil)
}
