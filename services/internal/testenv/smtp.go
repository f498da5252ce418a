package testenv

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/mail"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
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
	// replyFor is reply with the message (ReplyFor); it wins over reply.
	replyFor func(n int, m *mail.Message) error
	// replyMail and replyRcpt decide the answers to the n-th MAIL and
	// RCPT (ReplyMail, ReplyRcpt); mails and rcpts count them.
	replyMail, replyRcpt func(n int) error
	mails, rcpts         int
	// drop decides which replies are never written: the connection is
	// closed instead (Drop).
	drop  func(Reply) bool
	tries []Try
	// pace decides the wait before each reply (Pace); replies logs the
	// replies written.
	pace    func(Reply) time.Duration
	replies []Reply
	// closed ends every wait when the server closes.
	closed chan struct{}
	opts   SMTPOptions
	certs  *x509.CertPool
	logins []string
}

// Try is one DATA the server received, accepted or not.
type Try struct {
	N         int       // counting from 1
	At        time.Time // when the message was received, before the reply
	MessageID string    // its Message-ID header ("" when unparsable)
	Err       error     // the reply given; nil when accepted
}

// SMTPOptions change the scripted server.
type SMTPOptions struct {
	// TLS is "" (plain text), "starttls" (offered; the client upgrades)
	// or "tls" (implicit TLS from the first byte). The certificate is a
	// fresh self-signed one for 127.0.0.1 and localhost; CertPool trusts
	// it.
	TLS string
	// Username and Password, when set, are the credentials AUTH PLAIN
	// accepts (and the only mechanism offered).
	Username, Password string
	// NoPipelining leaves PIPELINING out of the EHLO reply, as a relay
	// without RFC 2920 does: a client must then wait for each reply.
	NoPipelining bool
}

// StartSMTP starts a plain-text server on a free loopback port, closed
// when t ends.
func StartSMTP(t testing.TB) *SMTPServer { return StartSMTPWith(t, SMTPOptions{}) }

// StartSMTPWith starts a server with options o on a free loopback port,
// closed when t ends.
func StartSMTPWith(t testing.TB, o SMTPOptions) *SMTPServer {
	t.Helper()
	s := &SMTPServer{closed: make(chan struct{}), opts: o}
	s.srv = smtp.NewServer(backend{s})
	s.srv.Domain = "localhost"
	s.srv.AllowInsecureAuth = true
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("smtp listen: %v", err)
	}
	s.Addr = ln.Addr().String()
	if o.TLS != "" {
		cert, pool, err := selfSigned()
		if err != nil {
			t.Fatalf("smtp certificate: %v", err)
		}
		s.certs = pool
		cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		switch o.TLS {
		case "starttls":
			s.srv.TLSConfig = cfg
		case "tls":
			// Under the pacing, so that it sees the plain text.
			ln = tls.NewListener(ln, cfg)
		default:
			t.Fatalf("SMTPOptions.TLS %q: want starttls or tls", o.TLS)
		}
	}
	go s.srv.Serve(pacedListener{ln, s})
	t.Cleanup(func() {
		close(s.closed)
		s.srv.Close()
	})
	return s
}

// CertPool trusts the server's certificate (nil without TLS).
func (s *SMTPServer) CertPool() *x509.CertPool { return s.certs }

// Logins returns the usernames that authenticated, in order.
func (s *SMTPServer) Logins() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.logins...)
}

// selfSigned makes a certificate for 127.0.0.1 and localhost, valid for a
// day, and a pool that trusts it.
func selfSigned() (tls.Certificate, *x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "carteiro test relay"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool, nil
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

// ReplyFor is Reply with the received message: f(n, m) decides the answer
// to the n-th DATA, m being the parsed message (nil when it does not
// parse). It replaces a Reply function; nil accepts everything again.
// f runs outside the server's lock and may block, as a slow relay would.
func (s *SMTPServer) ReplyFor(f func(n int, m *mail.Message) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reply, s.replyFor = nil, f
}

// ReplyMail sets what each MAIL is answered: f(n) for the n-th MAIL since
// the server started; a non-nil error is sent as the reply, and the
// commands pipelined after it are refused for want of a sender (RCPT and
// DATA get 502), as a relay does.
func (s *SMTPServer) ReplyMail(f func(n int) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.replyMail = f
}

// ReplyRcpt sets what each RCPT is answered, as ReplyMail does for MAIL;
// with no recipient accepted, DATA is refused (502).
func (s *SMTPServer) ReplyRcpt(f func(n int) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.replyRcpt = f
}

// Drop makes the server close the connection, without a word, where it
// would write a reply r for which f(r) is true: a relay that crashes or
// a connection that breaks in the middle of a conversation. nil (the
// default) writes every reply.
func (s *SMTPServer) Drop(f func(Reply) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop = f
}

// Tries returns every DATA received so far, in order, with its reply.
func (s *SMTPServer) Tries() []Try {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Try(nil), s.tries...)
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

// AuthMechanisms offers PLAIN when the server has credentials.
func (ss *session) AuthMechanisms() []string {
	if ss.s.opts.Username == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (ss *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, username, password string) error {
		s := ss.s
		if username != s.opts.Username || password != s.opts.Password {
			return Error(535, "5.7.8 authentication failed")
		}
		s.mu.Lock()
		s.logins = append(s.logins, username)
		s.mu.Unlock()
		return nil
	}), nil
}

func (*session) Reset()        {}
func (*session) Logout() error { return nil }

func (ss *session) Mail(string, *smtp.MailOptions) error {
	return ss.s.answer(&ss.s.mails, &ss.s.replyMail)
}

func (ss *session) Rcpt(string, *smtp.RcptOptions) error {
	return ss.s.answer(&ss.s.rcpts, &ss.s.replyRcpt)
}

// answer counts one more MAIL or RCPT in count and returns what its reply
// function (ReplyMail, ReplyRcpt) says, nil (accepted) without one.
func (s *SMTPServer) answer(count *int, reply *func(n int) error) error {
	s.mu.Lock()
	*count++
	n, f := *count, *reply
	s.mu.Unlock()
	if f == nil {
		return nil
	}
	return f(n)
}

func (ss *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s := ss.s
	at := time.Now()
	s.mu.Lock()
	s.datas++
	n, reply, replyFor := s.datas, s.reply, s.replyFor
	s.mu.Unlock()
	m, parseErr := mail.ReadMessage(bytes.NewReader(b))
	if parseErr != nil {
		m = nil
	}
	err = nil
	switch {
	case replyFor != nil:
		err = replyFor(n, m)
	case reply != nil:
		err = reply(n)
	}
	if err == nil && parseErr != nil {
		err = Error(554, "unparsable message: "+parseErr.Error())
	}
	try := Try{N: n, At: at, Err: err}
	if m != nil {
		try.MessageID = m.Header.Get("Message-ID")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tries = append(s.tries, try)
	if err != nil {
		return err
	}
	s.received = append(s.received, m)
	s.raw = append(s.raw, string(b))
	return nil
}
