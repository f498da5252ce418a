package main

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/carteiro/carteiro/services/internal/config"
	"github.com/carteiro/carteiro/services/internal/message"
	"github.com/carteiro/carteiro/services/internal/store"
	"github.com/carteiro/carteiro/services/internal/telemetry"
)

// memStore is an in-memory messageStore for fuzzing the handler at speed;
// the integration tests use the real Postgres.
type memStore struct {
	mu       sync.Mutex
	inserted []message.Input
}

func (m *memStore) Insert(_ context.Context, in message.Input, _, _ string) (store.Email, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.inserted = append(m.inserted, in)
	return store.Email{ID: store.NewID(), Assunto: in.Assunto, Mensagem: in.Mensagem, Status: message.StatusQueued}, nil
}

func (m *memStore) InsertOnce(ctx context.Context, _ string, _ []byte, in message.Input, tp, ts string) (store.Email, bool, error) {
	e, err := m.Insert(ctx, in, tp, ts)
	return e, false, err
}

func (m *memStore) Get(context.Context, string) (store.Email, error) {
	return store.Email{}, store.ErrNotFound
}
func (m *memStore) Ping(context.Context) error { return nil }

func newRegistry() *prometheus.Registry { return prometheus.NewRegistry() }

type nopNotifier struct{}

func (nopNotifier) Notify() {}

// FuzzCreateMessage posts arbitrary bodies under each content type: the
// api never panics, never answers 5xx, and stores only input that passes
// validation, exactly as the validator sees it.
func FuzzCreateMessage(f *testing.F) {
	for _, seed := range []struct{ ct, body string }{
		{"application/json", `{"assunto":"Olá","mensagem":"Tudo bem?"}`},
		{"application/json", `{"assunto":"a\r\nBcc: x@example.com","mensagem":"b"}`},
		{"application/json", "{\"assunto\":\"\xff\",\"mensagem\":\"b\"}"},
		{"application/json", `{"assunto":"\ud800","mensagem":"b"}`},
		{"application/json", `[1,2,3]`},
		{"application/json; charset=utf-8", `{"assunto":null}`},
		{"application/x-www-form-urlencoded", "assunto=%3Cscript%3E&mensagem=%00"},
		{"application/x-www-form-urlencoded", "assunto=a&assunto=b&mensagem=c%0D%0Ad"},
		{"application/x-www-form-urlencoded", "%zz"},
		{"text/plain", "assunto=a&mensagem=b"},
		{"", ""},
		{"application/x-www-form-urlencoded; charset=ISO-8859-1", "assunto=Caf%E9&mensagem=%81"},
		{"application/x-www-form-urlencoded", "_charset_=shift_jis&assunto=%82%A0&mensagem=%82"},
		{"application/x-www-form-urlencoded; charset=utf-16le", "assunto=%FD%FF&mensagem=%00%D8"},
		{"application/x-www-form-urlencoded; charset=iso-2022-kr", "assunto=a&mensagem=b"},
		{"multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"assunto\"\r\n\r\nOl\xe1\r\n" +
			"--x\r\nContent-Disposition: form-data; name=\"mensagem\"\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nb\r\n" +
			"--x\r\nContent-Disposition: form-data; name=\"_charset_\"\r\n\r\nlatin1\r\n--x--\r\n"},
		{"multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a\"\r\n\r\n\x00\r\n--x--"},
		{"multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"assunto\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=0D=0A\r\n--x--"},
		{"multipart/form-data; boundary=x", "--x\r\n\r\n"},
	} {
		f.Add(seed.ct, seed.body, false)
		f.Add(seed.ct, seed.body, true)
	}
	tel, err := telemetry.Setup(context.Background(), "fuzz", func(string) string { return "" })
	if err != nil {
		f.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	f.Fuzz(func(t *testing.T, contentType, body string, acceptJSON bool) {
		st := &memStore{}
		// A fresh registry per server: metrics register once per registry.
		tel := *tel
		tel.Registry = newRegistry()
		h := NewServer(log, st, nopNotifier{}, &tel, "", config.TraceContextLink)
		req := httptest.NewRequest(http.MethodPost, "/api/messages", strings.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		if acceptJSON {
			req.Header.Set("Accept", "application/json")
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("status %d for %q %q", rec.Code, contentType, body)
		}
		if rec.Code != http.StatusAccepted {
			if len(st.inserted) != 0 {
				t.Fatalf("status %d but stored %v", rec.Code, st.inserted)
			}
			return
		}
		if len(st.inserted) != 1 {
			t.Fatalf("202 but stored %d rows", len(st.inserted))
		}
		if p := st.inserted[0].Validate(); len(p) != 0 {
			t.Fatalf("stored invalid input %+v: %v", st.inserted[0], p)
		}
		if !strings.Contains(rec.Body.String(), "queued") {
			t.Fatalf("202 body does not say queued: %s", rec.Body)
		}
	})
}

// FuzzCharset decodes arbitrary bytes under arbitrary labels: never a
// panic, and text decoded from a charset other than UTF-8 is always valid
// UTF-8 (UTF-8 itself is checked by the validator).
func FuzzCharset(f *testing.F) {
	for _, seed := range []struct{ label, s string }{
		{"ISO-8859-1", "Caf\xe9"}, {"windows-1252", "\x81"}, {"shift_jis", "\x82\xa0\x82"},
		{"utf-16le", "\xfd\xff\x00\xd8"}, {"utf-16be", "\xff"}, {"gb18030", "\x84\x31\xa4\x37"},
		{"iso-2022-jp", "\x1b$B$\"\x1b(B"}, {"euc-kr", "\xb0"}, {"x-user-defined", "\xff"}, {"replacement", "a"}, {"", ""},
	} {
		f.Add(seed.label, seed.s)
	}
	f.Fuzz(func(t *testing.T, label, s string) {
		cs, aerr := lookupCharset(label)
		if aerr != nil {
			if aerr.Status != http.StatusUnsupportedMediaType || !strings.Contains(aerr.Message, quote(label)) {
				t.Fatalf("label %q: got %+v, want a 415 naming it", label, aerr)
			}
			return
		}
		out, ok := cs.decode(s)
		if ok && cs.enc != nil && !utf8.ValidString(out) {
			t.Fatalf("%s %q: decoded to invalid UTF-8 %q", cs.name, s, out)
		}
	})
}
