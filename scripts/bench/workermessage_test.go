package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSentMessage(t *testing.T) {
	raw, err := os.ReadFile("testdata/mailpit-raw.eml")
	if err != nil {
		t.Fatal(err)
	}
	// The fixture is a message the worker's sender sent to Mailpit, as
	// Mailpit's API gave it back: Return-Path, then a Received of three
	// lines, then the worker's own header.
	lines := strings.SplitAfter(string(raw), "\r\n")
	sent := strings.Join(lines[4:], "")
	if !strings.HasPrefix(sent, "Date: ") {
		t.Fatalf("fixture's fifth line is %q, want the worker's Date", lines[4])
	}
	const body = "\r\n\r\nhello\r\n"
	const id = "Message-ID: <1@carteiro.localhost>\r\n"
	for _, tc := range []struct {
		name, raw, want string
	}{
		{"mailpit's stored message", string(raw), sent},
		{"fields anywhere, any case, folded with tabs", "received: from a\r\n\tby b\r\n" + id + "RETURN-PATH: <x@y>\r\nSubject: s" + body, id + "Subject: s" + body},
		{"a field whose name only starts like one is kept", "Received-SPF: pass\r\n" + id + "Subject: s" + body, "Received-SPF: pass\r\n" + id + "Subject: s" + body},
		{"the body is never touched", id + "Subject: s\r\n\r\nReceived: in the body\r\n", id + "Subject: s\r\n\r\nReceived: in the body\r\n"},
	} {
		got, err := sentMessage([]byte(tc.raw))
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: got %q, %v, want %q", tc.name, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ name, raw string }{
		{"no empty line after the header", id + "Subject: s\r\n"},
		{"LF line ends", strings.ReplaceAll(id+"Subject: s"+body, "\r\n", "\n")},
		{"no Message-ID", "Subject: s" + body},
		{"no header at all", body},
		{"only receipt fields", "Received: from a\r\n" + body},
	} {
		if got, err := sentMessage([]byte(tc.raw)); err == nil {
			t.Errorf("%s: got %q, want an error", tc.name, got)
		}
	}
}

// TestSMTPSourceSendsTheWorkersMessage takes the newest message from a
// stand-in for Mailpit's API and sends it with the real smtp-source into a
// sink: every copy arrives, without the fields Mailpit added.
func TestSMTPSourceSendsTheWorkersMessage(t *testing.T) {
	need(t, smtpSourceBin(), "apt-get install postfix; scripts/ci-deps.sh installs it")
	raw, err := os.ReadFile("testdata/mailpit-raw.eml")
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/api/v1/message/latest/raw" {
			http.NotFound(w, r)
			return
		}
		w.Write(raw)
	}))
	defer api.Close()
	sink, addr := startSMTPSink(t)
	dir := t.TempDir()

	msg, err := workerMessage(context.Background(), newMailpit(api.URL))
	if err != nil {
		t.Fatal(err)
	}
	r, err := smtpSourceFile(context.Background(), addr, filepath.Join(dir, "smtp-source-worker-r2.eml"), msg, 30, 3, 2)
	if err != nil {
		t.Fatal(err)
	}
	sink.mu.Lock()
	if got := sink.subjects["bench delivery off r1 1"]; got != 30 || len(sink.subjects) != 1 || sink.sessions != 3 {
		t.Errorf("sink got %v in %d sessions, want the fixture's subject 30 times in 3", sink.subjects, sink.sessions)
	}
	sink.mu.Unlock()
	file, err := os.ReadFile(filepath.Join(dir, "smtp-source-worker-r2.eml"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(file, []byte("Received:")) || bytes.Contains(file, []byte("Return-Path:")) || bytes.Contains(file, []byte("\r")) ||
		!bytes.HasPrefix(file, []byte("Date: ")) {
		t.Errorf("message file:\n%s\nwant the worker's header first, no Mailpit fields, LF line ends", file)
	}
	if r.Round != 2 || r.Rate <= 0 || r.Errors != 0 || r.AvgBytes != len(file)+bytes.Count(file, []byte("\n")) ||
		!strings.Contains(r.Command, "-d -s 3 -m 30 -F "+filepath.Join(dir, "smtp-source-worker-r2.eml")) {
		t.Errorf("run %+v", r)
	}

	// A Mailpit that holds nothing (404, as Mailpit answers "latest"
	// then), or answers with an error: no message.
	for _, status := range []int{http.StatusNotFound, http.StatusInternalServerError} {
		empty := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "Message not found", status)
		}))
		if _, err := workerMessage(context.Background(), newMailpit(empty.URL)); err == nil {
			t.Errorf("Mailpit answering %d: no error", status)
		}
		empty.Close()
	}
}
