package testenv

import (
	"bytes"
	"io"
	"net"
	"net/mail"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"
)

// SMTPServer is an in-process SMTP server whose replies a test scripts.
type SMTPServer struct {
	Addr string
	srv  *smtp.Server

	mu       sync.Mutex
	received []*mail.Message
	raw      []string
	datas    int
	sessions int
	// reply decides the answer to the n-th DATA (counting from 1); nil
	// accepts everything.
	reply func(n int) error
}

// StartSMTP starts a server on a free loopback port, closed when t ends.
func StartSMTP(t testing.TB) *SMTPServer {
	t.Helper()
	s := &SMTPServer{}
	s.srv = smtp.NewServer(backend{s})
	s.srv.Domain = "localhost"
	s.srv.AllowInsecureAuth = true
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("smtp listen: %v", err)
	}
	s.Addr = ln.Addr().String()
	go s.srv.Serve(ln)
	t.Cleanup(func() { s.srv.Close() })
	return s
}

// Port is the server's port.
func (s *SMTPServer) Port() string {
	_, p, _ := net.SplitHostPort(s.Addr)
	return p
}

// Reply sets what each DATA is answered: f(n) for the n-th DATA since the
// server started; a non-nil error is sent as the reply.
func (s *SMTPServer) Reply(f func(n int) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reply = f
}

// Error returns an SMTP reply to give from a Reply function.
func Error(code int, message string) error {
	return &smtp.SMTPError{Code: code, Message: message}
}

// Messages returns the messages accepted so far.
func (s *SMTPServer) Messages() []*mail.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*mail.Message(nil), s.received...)
}

// Raw returns the accepted messages as they were received.
func (s *SMTPServer) Raw() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.raw...)
}

// Attempts returns how many DATA commands arrived, accepted or not.
func (s *SMTPServer) Attempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.datas
}

// Sessions returns how many SMTP connections were opened.
func (s *SMTPServer) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions
}

type backend struct{ s *SMTPServer }

func (b backend) NewSession(*smtp.Conn) (smtp.Session, error) {
	b.s.mu.Lock()
	b.s.sessions++
	b.s.mu.Unlock()
	return &session{s: b.s}, nil
}

type session struct{ s *SMTPServer }

func (*session) Reset()                               {}
func (*session) Logout() error                        { return nil }
func (*session) Mail(string, *smtp.MailOptions) error { return nil }
func (*session) Rcpt(string, *smtp.RcptOptions) error { return nil }

func (ss *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s := ss.s
	s.mu.Lock()
	s.datas++
	n, reply := s.datas, s.reply
	s.mu.Unlock()
	if reply != nil {
		if err := reply(n); err != nil {
			return err
		}
	}
	m, err := mail.ReadMessage(bytes.NewReader(b))
	if err != nil {
		return Error(554, "unparsable message: "+err.Error())
	}
	s.mu.Lock()
	s.received = append(s.received, m)
	s.raw = append(s.raw, string(b))
	s.mu.Unlock()
	return nil
}
