package main

import (
	"embed"
	"encoding/json"
	"html/template"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/carteiro/carteiro/services/internal/message"
	"github.com/carteiro/carteiro/services/internal/store"
)

//go:embed templates/*.html
var templateFS embed.FS

// pages are the HTML answers given to plain form posts and to browsers;
// html/template escapes everything a visitor typed.
var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"statusText": statusText,
	// attemptTime is a time as the pages show it (UTC: the server does
	// not know the visitor's zone; the page's script shows local time).
	"attemptTime": func(t time.Time) string { return t.UTC().Format("02/01/2006 15:04:05") + " UTC" },
	"problemText": func(field string, c message.Code) string {
		return fieldNames[field] + ": " + problemTexts[c]
	},
}).ParseFS(templateFS, "templates/*.html"))

// pageData is what every template gets.
type pageData struct {
	Email     *store.Email
	Failure   *failureView // the public account of Email's failure
	StatusURL string
	Error     *apiError
	TraceID   string
	TraceURL  string
}

// wantsJSON reports whether the client asked for JSON, by sending it or by
// accepting it.
func wantsJSON(r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return mt == "application/json" || strings.Contains(r.Header.Get("Accept"), "application/json")
}

// prefersHTML reports whether a GET comes from a browser navigating.
func prefersHTML(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

func respondJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func respondHTML(w http.ResponseWriter, log *slog.Logger, status int, name string, data pageData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := pages.ExecuteTemplate(w, name, data); err != nil {
		log.Error("rendering page", "page", name, "err", err)
	}
}

// errorResponse is the JSON body of every error.
type errorResponse struct {
	Error  string                  `json:"error"`
	Fields map[string]string       `json:"fields,omitempty"`
	Codes  map[string]message.Code `json:"codes,omitempty"`
}

func respondError(w http.ResponseWriter, r *http.Request, log *slog.Logger, e *apiError) {
	if e.RetryAfter != "" {
		w.Header().Set("Retry-After", e.RetryAfter)
	}
	w.Header().Set("Cache-Control", "no-store")
	if wantsJSON(r) || (r.Method == http.MethodGet && !prefersHTML(r)) {
		res := errorResponse{Error: e.Message}
		if len(e.Problems) > 0 {
			res.Fields = map[string]string{}
			res.Codes = e.Problems
			for f, c := range e.Problems {
				res.Fields[f] = c.Message(f)
			}
		}
		respondJSON(w, e.Status, res)
		return
	}
	respondHTML(w, log, e.Status, "error.html", pageData{Error: e})
}

// The page speaks pt-BR, so the HTML answers do too.
var (
	fieldNames = map[string]string{"assunto": "Assunto", "mensagem": "Mensagem"}

	problemTexts = map[message.Code]string{
		message.CodeRequired:        "campo obrigatório.",
		message.CodeBlank:           "não pode ficar em branco.",
		message.CodeTooLong:         "texto longo demais (assunto até 100 caracteres, mensagem até 250).",
		message.CodeInvalidUTF8:     "contém caracteres inválidos.",
		message.CodeInvalidEncoding: "contém bytes inválidos na codificação declarada.",
		message.CodeControlChars:    "contém quebras de linha ou caracteres de controle não permitidos.",
	}
)

func statusText(s message.Status) string {
	switch s {
	case message.StatusQueued:
		return "na fila"
	case message.StatusSending:
		return "enviando"
	case message.StatusSent:
		return "enviada"
	case message.StatusFailed:
		return "falhou, nova tentativa em breve"
	case message.StatusDead:
		return "não enviada"
	}
	return string(s)
}
