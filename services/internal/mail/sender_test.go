package mail

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/carteiro/carteiro/services/internal/config"
	"github.com/carteiro/carteiro/services/internal/testenv"
)

func newSender(t *testing.T, port string) *Sender {
	t.Helper()
	return newSenderWith(t, port, 2*time.Second, 10*time.Second)
}

// newSenderWith is a sender with the given timeouts: per reply, and for
// the final dot's reply.
func newSenderWith(t *testing.T, port string, timeout, dataTimeout time.Duration) *Sender {
	t.Helper()
	p, _ := strconv.Atoi(port)
	s, err := NewSender(config.SMTP{Host: "127.0.0.1", Port: p, TLS: "none", Timeout: timeout, DataTimeout: dataTimeout},
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

// paceOnly makes the server wait d before its reply to command, and
// answer everything else at once.
func paceOnly(srv *testenv.SMTPServer, command string, d time.Duration) {
	srv.Pace(func(r testenv.Reply) time.Duration {
		if r.Command == command {
			return d
		}
		return 0
	})
}

func message(id string) Message {
	return Message{ID: id, Assunto: "a", Mensagem: "b", Date: time.Now()}
}

// Every reply takes a while but comes within the timeout: the send
// succeeds although the whole conversation lasts longer than the timeout.
func TestEachReplyHasItsOwnTimeout(t *testing.T) {
	srv := testenv.StartSMTP(t)
	srv.PaceEvery(700 * time.Millisecond)
	s := newSenderWith(t, srv.Port(), 1500*time.Millisecond, 1500*time.Millisecond)
	if _, err := s.Send(context.Background(), message("slow")); err != nil {
		t.Fatalf("send: %v", err)
	}
	if got := len(srv.Messages()); got != 1 {
		t.Errorf("messages: got %d, want 1", got)
	}
	var cmds []string
	for _, r := range srv.Replies() {
		cmds = append(cmds, r.Command)
	}
	// greeting, EHLO, MAIL, RCPT, DATA, the final dot: six waits of
	// 700ms each, longer together than the 1.5s timeout; MAIL, RCPT and
	// DATA are pipelined, so DATA's reply comes 2.1s after they were
	// written, 700ms after RCPT's.
	if got, want := strings.Join(cmds, ","), ",EHLO,MAIL,RCPT,DATA,."; got != want {
		t.Errorf("replies: got %s, want %s", got, want)
	}
}

// A reply later than the timeout fails the send, as a transient failure
// of that command.
func TestReplyLaterThanTimeoutFails(t *testing.T) {
	srv := testenv.StartSMTP(t)
	paceOnly(srv, "MAIL", 5*time.Second)
	s := newSenderWith(t, srv.Port(), time.Second, 10*time.Second)
	_, err := s.Send(context.Background(), message("late"))
	if err == nil {
		t.Fatal("got nil error, want a timeout waiting for MAIL's reply")
	}
	if Permanent(err) || ReplyCode(err) != 0 || !strings.Contains(err.Error(), "MAIL FROM") {
		t.Errorf("got %v (permanent %v), want a transient failure of MAIL FROM", err, Permanent(err))
	}
	if got := srv.Attempts(); got != 0 {
		t.Errorf("DATA commands: got %d, want 0", got)
	}
}

// The final dot's reply has the longer SMTP_DATA_TIMEOUT.
func TestFinalDotHasDataTimeout(t *testing.T) {
	srv := testenv.StartSMTP(t)
	paceOnly(srv, ".", 3*time.Second)
	s := newSenderWith(t, srv.Port(), time.Second, 30*time.Second)
	if _, err := s.Send(context.Background(), message("scanned")); err != nil {
		t.Fatalf("send: %v", err)
	}
	if got := len(srv.Messages()); got != 1 {
		t.Errorf("messages: got %d, want 1", got)
	}
}

// The window no client can close (RFC 1047): the relay accepted the
// message, but its reply to the final dot did not arrive in time. The send
// fails, transiently, and the relay has the message: a retry makes a copy
// with the same Message-ID.
func TestFinalDotTimeoutAfterAcceptance(t *testing.T) {
	srv := testenv.StartSMTP(t)
	paceOnly(srv, ".", 5*time.Second)
	s := newSenderWith(t, srv.Port(), time.Second, time.Second)
	_, err := s.Send(context.Background(), message("rfc1047"))
	if err == nil || Permanent(err) || !strings.Contains(err.Error(), "final dot") {
		t.Fatalf("got %v, want a transient failure waiting for the final dot's reply", err)
	}
	if got := len(srv.Messages()); got != 1 {
		t.Errorf("messages the relay accepted: got %d, want 1", got)
	}
}

// When ctx is done the connection is closed at once, even while the relay
// holds its reply to the final dot.
func TestCancelClosesTheConnection(t *testing.T) {
	srv := testenv.StartSMTP(t)
	ctx, cancel := context.WithCancel(context.Background())
	srv.Pace(func(r testenv.Reply) time.Duration {
		if r.Command == "." {
			cancel()
			return time.Hour
		}
		return 0
	})
	s := newSenderWith(t, srv.Port(), time.Minute, time.Hour)
	_, err := s.Send(ctx, message("stopped"))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want an error wrapping context.Canceled", err)
	}
	if Permanent(err) {
		t.Errorf("an interrupted send must be transient: %v", err)
	}
	// The connection was dropped, not pooled: the next send dials again.
	srv.Pace(nil)
	if _, err := s.Send(context.Background(), message("next")); err != nil {
		t.Fatalf("send after the interruption: %v", err)
	}
	if got := srv.Sessions(); got != 2 {
		t.Errorf("connections: got %d, want 2", got)
	}
}

// The stored Message-ID is used as given.
func TestStoredMessageID(t *testing.T) {
	srv := testenv.StartSMTP(t)
	s := newSender(t, srv.Port())
	m := message("0193")
	m.MessageID = "0193@old-domain.example"
	if _, err := s.Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if got := srv.Messages()[0].Header.Get("Message-Id"); got != "<0193@old-domain.example>" {
		t.Errorf("Message-ID: got %q, want <0193@old-domain.example>", got)
	}
}

// TLS, both ways, with SMTP AUTH: the sender's own dialer keeps go-mail's
// STARTTLS and authentication working, and the per-reply deadlines hold
// under TLS (implicit TLS: every reply paced, seven replies longer
// together than the timeout).
func TestSendOverTLSWithAuth(t *testing.T) {
	for _, mode := range []string{"starttls", "tls"} {
		t.Run(mode, func(t *testing.T) {
			srv := testenv.StartSMTPWith(t, testenv.SMTPOptions{TLS: mode, Username: "carteiro", Password: "s3cret"})
			if mode == "tls" {
				srv.PaceEvery(300 * time.Millisecond)
			}
			p, _ := strconv.Atoi(srv.Port())
			s, err := NewSender(config.SMTP{Host: "127.0.0.1", Port: p, TLS: mode, Username: "carteiro", Password: "s3cret",
				Timeout: time.Second, DataTimeout: time.Second},
				"carteiro@example.test", "contato@example.test", 1, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.Close)
			s.tlsConfig.RootCAs = srv.CertPool()
			for i := range 2 {
				if _, err := s.Send(context.Background(), message(strconv.Itoa(i))); err != nil {
					t.Fatalf("send %d: %v", i, err)
				}
			}
			if got := len(srv.Messages()); got != 2 {
				t.Errorf("messages: got %d, want 2", got)
			}
			if got := srv.Logins(); len(got) != 1 || got[0] != "carteiro" {
				t.Errorf("logins: got %v, want one, as carteiro, on one pooled connection", got)
			}
		})
	}
	// Wrong credentials fail the connection, transiently (configuration,
	// not the message).
	srv := testenv.StartSMTPWith(t, testenv.SMTPOptions{TLS: "starttls", Username: "carteiro", Password: "s3cret"})
	p, _ := strconv.Atoi(srv.Port())
	s, err := NewSender(config.SMTP{Host: "127.0.0.1", Port: p, TLS: "starttls", Username: "carteiro", Password: "wrong",
		Timeout: time.Second, DataTimeout: time.Second}, "carteiro@example.test", "contato@example.test", 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.tlsConfig.RootCAs = srv.CertPool()
	_, err = s.Send(context.Background(), message("x"))
	if err == nil || Permanent(err) || !strings.Contains(err.Error(), "535") {
		t.Errorf("wrong password: got %v, want a transient failure carrying the 535", err)
	}
}

// With PIPELINING offered (RFC 2920) MAIL, RCPT and DATA leave together:
// the server has RCPT and DATA already when it answers MAIL. Without it,
// each command waits for the reply to the one before.
func TestPipelinesTheEnvelope(t *testing.T) {
	for _, tt := range []struct {
		name       string
		opts       testenv.SMTPOptions
		wantQueued []int // when MAIL, RCPT and DATA are answered
	}{
		{"offered", testenv.SMTPOptions{}, []int{2, 1, 0}},
		{"not offered", testenv.SMTPOptions{NoPipelining: true}, []int{0, 0, 0}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := testenv.StartSMTPWith(t, tt.opts)
			s := newSender(t, srv.Port())
			for i := range 2 {
				if _, err := s.Send(context.Background(), message(strconv.Itoa(i))); err != nil {
					t.Fatalf("send %d: %v", i, err)
				}
			}
			if got := len(srv.Messages()); got != 2 {
				t.Errorf("messages: got %d, want 2", got)
			}
			var got []int
			for _, r := range srv.Replies() {
				switch r.Command {
				case "MAIL", "RCPT", "DATA":
					got = append(got, r.Queued)
				}
			}
			want := append(append([]int(nil), tt.wantQueued...), tt.wantQueued...)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("commands read ahead when MAIL, RCPT, DATA were answered: got %v, want %v", got, want)
			}
		})
	}
}

// A refused MAIL or RCPT fails the send with that command's reply, and
// classified by it, pipelined or not; the commands pipelined after it are
// refused too, and those replies are read, but the first refusal is the
// error. Nothing reaches DATA's data, and the next send works.
func TestEnvelopeRefusals(t *testing.T) {
	tests := []struct {
		command       string
		code          int
		wantPermanent bool
	}{
		{"MAIL", 451, false}, {"MAIL", 421, false}, {"MAIL", 550, true}, {"MAIL", 553, true},
		{"RCPT", 450, false}, {"RCPT", 452, false}, {"RCPT", 550, true}, {"RCPT", 551, true},
	}
	for _, pipelining := range []bool{true, false} {
		srv := testenv.StartSMTPWith(t, testenv.SMTPOptions{NoPipelining: !pipelining})
		s := newSender(t, srv.Port())
		for _, tt := range tests {
			name := fmt.Sprintf("pipelining %v, %s %d", pipelining, tt.command, tt.code)
			refuse := func(int) error { return testenv.Error(tt.code, "scripted refusal") }
			srv.ReplyMail(nil)
			srv.ReplyRcpt(nil)
			if tt.command == "MAIL" {
				srv.ReplyMail(refuse)
			} else {
				srv.ReplyRcpt(refuse)
			}
			before := len(srv.Replies())
			_, err := s.Send(context.Background(), message("refused"))
			if err == nil {
				t.Fatalf("%s: got nil error", name)
			}
			wantCmd := map[string]string{"MAIL": "MAIL FROM", "RCPT": "RCPT TO"}[tt.command]
			if !strings.Contains(err.Error(), "smtp "+wantCmd+":") || !strings.Contains(err.Error(), "scripted refusal") {
				t.Errorf("%s: error %q does not name %s and carry its reply", name, err, wantCmd)
			}
			if got := ReplyCode(err); got != tt.code {
				t.Errorf("%s: ReplyCode got %d, want %d", name, got, tt.code)
			}
			if got := Permanent(err); got != tt.wantPermanent {
				t.Errorf("%s: Permanent got %v, want %v", name, got, tt.wantPermanent)
			}
			var got []string
			for _, r := range srv.Replies()[before:] {
				switch r.Command {
				case "MAIL", "RCPT", "DATA":
					got = append(got, fmt.Sprintf("%s %d", r.Command, r.Code))
				}
			}
			want := map[string][]string{
				"MAIL": {fmt.Sprintf("MAIL %d", tt.code), "RCPT 502", "DATA 502"},
				"RCPT": {"MAIL 250", fmt.Sprintf("RCPT %d", tt.code), "DATA 502"},
			}[tt.command]
			if !pipelining {
				// Nothing is sent after the refused command.
				want = want[:map[string]int{"MAIL": 1, "RCPT": 2}[tt.command]]
			}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("%s: replies got %v, want %v", name, got, want)
			}
		}
		if got := srv.Attempts(); got != 0 {
			t.Errorf("pipelining %v: message data sent %d times, want 0", pipelining, got)
		}
		srv.ReplyMail(nil)
		srv.ReplyRcpt(nil)
		if _, err := s.Send(context.Background(), message("after")); err != nil {
			t.Errorf("pipelining %v: send after refusals: %v", pipelining, err)
		}
		if got := len(srv.Messages()); got != 1 {
			t.Errorf("pipelining %v: messages got %d, want 1", pipelining, got)
		}
	}
}

// The relay drops the connection in the middle of the pipelined
// commands, or instead of answering the final dot:
// a transient failure of the command left unanswered, with no reply
// code, and the next send dials a new connection.
func TestConnectionDroppedMidTransaction(t *testing.T) {
	tests := []struct {
		at      string
		wantCmd string
		wantMsg int // messages the relay has (it got the data before dropping)
	}{
		{"MAIL", "MAIL FROM", 0},
		{"RCPT", "RCPT TO", 0},
		{".", "final dot", 1},
	}
	for _, tt := range tests {
		t.Run(tt.at, func(t *testing.T) {
			srv := testenv.StartSMTP(t)
			srv.Drop(func(r testenv.Reply) bool { return r.Command == tt.at })
			s := newSender(t, srv.Port())
			_, err := s.Send(context.Background(), message("dropped"))
			if err == nil {
				t.Fatal("got nil error")
			}
			if Permanent(err) || ReplyCode(err) != 0 || !strings.Contains(err.Error(), "smtp "+tt.wantCmd+":") {
				t.Errorf("got %v (permanent %v, code %d), want a transient failure of %s with no reply code",
					err, Permanent(err), ReplyCode(err), tt.wantCmd)
			}
			if got := len(srv.Messages()); got != tt.wantMsg {
				t.Errorf("messages the relay accepted: got %d, want %d", got, tt.wantMsg)
			}
			srv.Drop(nil)
			if _, err := s.Send(context.Background(), message("next")); err != nil {
				t.Fatalf("send after the drop: %v", err)
			}
			if got := srv.Sessions(); got != 2 {
				t.Errorf("connections: got %d, want 2", got)
			}
		})
	}
}

// BenchmarkSend sends over one pooled connection to the in-process relay
// (its work included), with and without PIPELINING offered: go test
// -bench Send (-cpuprofile shows the sender's own share of a message).
func BenchmarkSend(b *testing.B) {
	for _, tt := range []struct {
		name string
		opts testenv.SMTPOptions
	}{
		{"pipelining", testenv.SMTPOptions{}},
		{"no-pipelining", testenv.SMTPOptions{NoPipelining: true}},
	} {
		b.Run(tt.name, func(b *testing.B) {
			srv := testenv.StartSMTPWith(b, tt.opts)
			p, _ := strconv.Atoi(srv.Port())
			s, err := NewSender(config.SMTP{Host: "127.0.0.1", Port: p, TLS: "none", Timeout: 10 * time.Second, DataTimeout: 10 * time.Second},
				"Carteiro <carteiro@example.test>", "contato@example.test", 1, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(s.Close)
			m := Message{ID: "0193", Assunto: "Olá, carteiro", Mensagem: strings.Repeat("Olá, isto é uma mensagem de teste do carteiro. ", 6), Date: time.Now()}
			for b.Loop() {
				if _, err := s.Send(context.Background(), m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// NewSender parses both addresses once and refuses a bad one, naming
// which.
func TestNewSenderRefusesBadAddresses(t *testing.T) {
	cfg := config.SMTP{Host: "127.0.0.1", Port: 25, TLS: "none", Timeout: time.Second}
	for _, tc := range []struct {
		from, to, want string
	}{
		{"not an address", "contato@example.test", "sender address"},
		{"Carteiro <carteiro@example.test>", "not an address", "recipient address"},
	} {
		s, err := NewSender(cfg, tc.from, tc.to, 1, nil)
		if err == nil {
			s.Close()
			t.Errorf("NewSender(%q, %q): got nil, want an error naming the %s", tc.from, tc.to, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewSender(%q, %q): got %v, want an error naming the %s", tc.from, tc.to, err, tc.want)
		}
	}
}

// A relay that wrongly answers DATA with 354 after refusing the only
// recipient of a pipelined envelope (RFC 2920 §3.1) gets no message data:
// the send fails with the refusal and the connection is closed, which
// aborts the transaction (RFC 5321 §3.3). Scripted by hand: go-smtp
// refuses such a DATA itself.
func TestDataAcceptedAfterRefusalSendsNoData(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	after := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			after <- "accept: " + err.Error()
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		_, _ = io.WriteString(c, "220 relay.test ESMTP\r\n")
		if _, err := r.ReadString('\n'); err != nil { // EHLO
			after <- "EHLO: " + err.Error()
			return
		}
		_, _ = io.WriteString(c, "250-relay.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
		for range 3 { // MAIL, RCPT, DATA
			if _, err := r.ReadString('\n'); err != nil {
				after <- "envelope: " + err.Error()
				return
			}
		}
		_, _ = io.WriteString(c, "250 2.1.0 ok\r\n550 5.1.1 no such user\r\n354 go ahead\r\n")
		rest, err := io.ReadAll(r) // until the client closes
		if err != nil {
			after <- fmt.Sprintf("%q, then %v instead of the connection closed", rest, err)
			return
		}
		after <- string(rest)
	}()
	s := newSender(t, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	_, err = s.Send(context.Background(), message("refused"))
	if err == nil {
		t.Fatal("got nil error, want RCPT's refusal")
	}
	if !Permanent(err) || ReplyCode(err) != 550 || !strings.Contains(err.Error(), "smtp RCPT TO:") {
		t.Errorf("got %v (permanent %v, code %d), want RCPT TO's permanent 550", err, Permanent(err), ReplyCode(err))
	}
	if got := <-after; got != "" {
		t.Errorf("sent after the 354: got %q, want nothing, the connection closed", got)
	}
}
