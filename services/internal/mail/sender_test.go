package mail

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/carteiro/carteiro/services/internal/config"
	"github.com/carteiro/carteiro/services/internal/testenv"
)

func newSender(t *testing.T, port string) *Sender {
	t.Helper()
	p, _ := strconv.Atoi(port)
	s, err := NewSender(config.SMTP{Host: "127.0.0.1", Port: p, TLS: "none", Timeout: 2 * time.Second},
		"Carteiro <carteiro@example.test>", "contato@example.test", 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestSendReusesConnections(t *testing.T) {
	srv := testenv.StartSMTP(t)
	s := newSender(t, srv.Port())
	for i := range 5 {
		if _, err := s.Send(context.Background(), Message{ID: strconv.Itoa(i), Assunto: "a", Mensagem: "b", Date: time.Now()}); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if got := srv.Sessions(); got != 1 {
		t.Errorf("connections: got %d, want 1 for five sequential sends", got)
	}
	if got := len(srv.Messages()); got != 5 {
		t.Errorf("messages: got %d, want 5", got)
	}
	if got := s.MessageID("abc"); got != "abc@example.test" {
		t.Errorf("MessageID: got %q, want abc@example.test", got)
	}
}

func TestSendClassifiesFailures(t *testing.T) {
	srv := testenv.StartSMTP(t)
	s := newSender(t, srv.Port())
	tests := []struct {
		code          int
		wantPermanent bool
	}{
		{421, false}, {450, false}, {451, false}, {452, false},
		{550, true}, {552, true}, {554, true},
	}
	for _, tt := range tests {
		srv.Reply(func(int) error { return testenv.Error(tt.code, "scripted reply") })
		_, err := s.Send(context.Background(), Message{ID: "x", Assunto: "a", Mensagem: "b", Date: time.Now()})
		if err == nil {
			t.Fatalf("%d: got nil error", tt.code)
		}
		if got := Permanent(err); got != tt.wantPermanent {
			t.Errorf("%d: Permanent got %v, want %v (%v)", tt.code, got, tt.wantPermanent, err)
		}
		if got := ReplyCode(err); got != tt.code {
			t.Errorf("%d: ReplyCode got %d", tt.code, got)
		}
		if !strings.Contains(err.Error(), strconv.Itoa(tt.code)) || !strings.Contains(err.Error(), "scripted reply") {
			t.Errorf("%d: error %q does not carry the reply", tt.code, err)
		}
	}
	// After failures the sender still works.
	srv.Reply(nil)
	if _, err := s.Send(context.Background(), Message{ID: "y", Assunto: "a", Mensagem: "b", Date: time.Now()}); err != nil {
		t.Errorf("send after failures: %v", err)
	}
}

func TestConnectionRefusedIsTransient(t *testing.T) {
	s := newSender(t, strconv.Itoa(testenv.FreePort(t)))
	_, err := s.Send(context.Background(), Message{ID: "x", Assunto: "a", Mensagem: "b", Date: time.Now()})
	if err == nil {
		t.Fatal("got nil error, want connection refused")
	}
	if Permanent(err) || ReplyCode(err) != 0 {
		t.Errorf("got permanent=%v code=%d, want transient with no reply code", Permanent(err), ReplyCode(err))
	}
}
