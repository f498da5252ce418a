package mail

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	gomail "github.com/wneessen/go-mail"
	"github.com/wneessen/go-mail/smtp"

	"github.com/carteiro/carteiro/services/internal/config"
)

// Message is what a worker hands to the sender.
type Message struct {
	// ID is the message's row id.
	ID string
	// MessageID is the Message-ID header's value without angle brackets,
	// the one stored with the row so that every attempt carries the same;
	// empty derives it from ID (see Sender.MessageID).
	MessageID string
	Assunto   string
	Mensagem  string
	Date      time.Time
}

// Sender sends to one fixed recipient from one fixed sender address over
// pooled connections. Each wait for a reply is bounded by its own timeout
// (RFC 5321 §4.5.3.2): config.SMTP.Timeout for the greeting and every
// command, config.SMTP.DataTimeout for the reply to the final dot.
type Sender struct {
	// client dials: connection, greeting, EHLO, STARTTLS and AUTH. The
	// mail transaction itself is driven here (see transact): pipelined
	// when the relay offers it, and so that the final dot can have its
	// own timeout.
	client *gomail.Client
	// from and to are parsed once: every message has the same (go-mail
	// only reads them, so the sends share them).
	from   *mail.Address
	to     *mail.Address
	domain string
	// idle holds open connections between sends.
	idle        chan *conn
	host        string
	port        int
	timeout     time.Duration
	dataTimeout time.Duration
	// implicitTLS: TLS from the first byte (SMTP_TLS=tls), done by dialTCP.
	implicitTLS bool
	tlsConfig   *tls.Config
	tracer      trace.Tracer
}

// NewSender prepares a sender; it connects lazily. poolSize is how many
// idle connections are kept (one per concurrent send is right). Each send
// is a CLIENT span of tracer (nil: no spans).
func NewSender(cfg config.SMTP, from, to string, poolSize int, tracer trace.Tracer) (*Sender, error) {
	if tracer == nil {
		tracer = noop.NewTracerProvider().Tracer("")
	}
	a, err := mail.ParseAddress(from)
	if err != nil {
		return nil, fmt.Errorf("sender address: %w", err)
	}
	rcpt, err := mail.ParseAddress(to)
	if err != nil {
		return nil, fmt.Errorf("recipient address: %w", err)
	}
	s := &Sender{
		from: a, to: rcpt,
		domain:  a.Address[strings.LastIndexByte(a.Address, '@')+1:],
		idle:    make(chan *conn, max(1, poolSize)),
		host:    cfg.Host,
		port:    cfg.Port,
		timeout: cfg.Timeout, dataTimeout: max(cfg.DataTimeout, cfg.Timeout),
		implicitTLS: cfg.TLS == "tls",
		tlsConfig:   &tls.Config{ServerName: cfg.Host, MinVersion: tls.VersionTLS12},
		tracer:      tracer,
	}
	opts := []gomail.Option{
		gomail.WithPort(cfg.Port),
		// Bounds the TCP connection and the greeting; every later reply
		// has its own deadline (replyConn).
		gomail.WithTimeout(cfg.Timeout),
		gomail.WithHELO("carteiro"),
		gomail.WithDialContextFunc(s.dialTCP),
		gomail.WithTLSConfig(s.tlsConfig),
	}
	switch cfg.TLS {
	case "tls":
		opts = append(opts, gomail.WithSSL())
	case "starttls":
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	default:
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	}
	if cfg.Username != "" {
		auth := gomail.WithSMTPAuth(gomail.SMTPAuthAutoDiscover)
		if s.implicitTLS {
			// With its own dialer go-mail cannot tell the connection is
			// TLS, and its discovery would then refuse PLAIN and LOGIN:
			// name the mechanisms, strongest first. PLAIN and LOGIN still
			// check for themselves that the connection is TLS.
			auth = gomail.WithOpportunisticSMTPAuth(gomail.SMTPAuthSCRAMSHA256PLUS, gomail.SMTPAuthSCRAMSHA256,
				gomail.SMTPAuthSCRAMSHA1PLUS, gomail.SMTPAuthSCRAMSHA1, gomail.SMTPAuthCramMD5,
				gomail.SMTPAuthPlain, gomail.SMTPAuthLogin)
		}
		opts = append(opts, auth, gomail.WithUsername(cfg.Username), gomail.WithPassword(cfg.Password))
	}
	if s.client, err = gomail.NewClient(cfg.Host, opts...); err != nil {
		return nil, fmt.Errorf("smtp client: %w", err)
	}
	return s, nil
}

// Addr is the relay's host:port.
func (s *Sender) Addr() string { return net.JoinHostPort(s.host, strconv.Itoa(s.port)) }

// MessageID returns the Message-ID (without angle brackets) for a row id,
// in MAIL_FROM's domain. The store keeps the first one it is given, so a
// later change of MAIL_FROM does not change a message's Message-ID.
func (s *Sender) MessageID(id string) string { return id + "@" + s.domain }

// ReplyAccepted is the one reply code Send takes as the relay's acceptance
// of a message: 250 to the final dot of DATA (RFC 5321 §4.3.2).
const ReplyAccepted = 250

// Send delivers m and returns the text of the server's 250 reply. A failure is
// a transaction error (the relay's reply to MAIL, RCPT, DATA or the final
// dot, or the connection failing meanwhile) or a connection error; see
// Permanent. When ctx is done the connection is closed at once, wherever
// the send is; the error then wraps ctx.Err(). If the relay's 250 to the
// final dot arrived before that, Send succeeds.
func (s *Sender) Send(ctx context.Context, m Message) (reply string, err error) {
	mid := m.MessageID
	if mid == "" {
		mid = s.MessageID(m.ID)
	}
	ctx, span := s.tracer.Start(ctx, "smtp send", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("server.address", s.host),
			attribute.Int("server.port", s.port),
			attribute.String("network.protocol.name", "smtp"),
			attribute.String("smtp.message_id", mid),
		))
	defer func() {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
			if code := ReplyCode(err); code != 0 {
				span.SetAttributes(attribute.Int("smtp.reply.code", code))
			}
		} else {
			span.SetAttributes(attribute.Int("smtp.reply.code", ReplyAccepted), attribute.String("smtp.reply.text", reply))
		}
		span.End()
	}()
	msg := gomail.NewMsg(gomail.WithCharset(gomail.CharsetUTF8), gomail.WithEncoding(gomail.EncodingQP))
	msg.FromMailAddress(s.from)
	msg.ToMailAddress(s.to)
	setSubject(msg, m.Assunto)
	msg.SetMessageIDWithValue(mid)
	msg.SetDateWithValue(m.Date)
	msg.SetUserAgent("carteiro")
	msg.SetBodyString(gomail.TypeTextPlain, m.Mensagem)

	c, err := s.conn(ctx)
	if err != nil {
		return "", err
	}
	stop := context.AfterFunc(ctx, func() { _ = c.rc.Close() })
	reply, err = s.transact(c, msg)
	closed := !stop()
	if err != nil || closed {
		// After a failure the connection's state is unknown: drop it.
		_ = c.rc.Close()
	}
	if err != nil {
		if closed {
			return "", fmt.Errorf("send interrupted: %w (%v)", context.Cause(ctx), err)
		}
		return "", err
	}
	if !closed {
		s.release(c)
	}
	return reply, nil
}

// transact runs one mail transaction (RFC 5321 §3.3) on c. When the relay
// offers PIPELINING (RFC 2920), MAIL, every RCPT and DATA leave in one
// write and their replies are then read, every one, in order; otherwise
// each command waits for its reply before the next is sent.
func (s *Sender) transact(c *conn, msg *gomail.Msg) (string, error) {
	from, err := msg.GetSender(false)
	if err != nil {
		return "", permanent(err)
	}
	rcpts, err := msg.GetRecipients()
	if err != nil {
		return "", permanent(err)
	}
	var cmds []command
	if ok, _ := c.client.Extension("PIPELINING"); ok {
		cmds = envelope(c.client, from, rcpts)
	} else {
		if err := c.client.Mail(from); err != nil {
			return "", transactionError{"MAIL FROM", err}
		}
		for _, r := range rcpts {
			if err := c.client.Rcpt(r); err != nil {
				return "", transactionError{"RCPT TO", err}
			}
		}
	}
	cmds = append(cmds, command{name: "DATA", line: "DATA", want: 354})
	if err := s.exchange(c, cmds); err != nil {
		return "", err
	}
	// The message is buffered until Close writes the final dot and flushes;
	// the relay may then take its time (RFC 5321 §4.5.3.2.6: 10 minutes).
	w := c.client.Text.DotWriter()
	if _, err := msg.WriteTo(w); err != nil {
		return "", transactionError{"message data", err}
	}
	c.rc.setTimeout(s.dataTimeout)
	err = w.Close()
	c.rc.setTimeout(s.timeout)
	if err != nil {
		return "", transactionError{"final dot", err}
	}
	_, reply, err := c.client.Text.ReadResponse(ReplyAccepted)
	if err != nil {
		return "", transactionError{"final dot", err}
	}
	return reply, nil
}

// command is one command of a mail transaction: its name in errors, its
// line (without CRLF), and the reply code it wants (textproto's
// expectCode: 25 takes 250 or 251).
type command struct {
	name string
	line string
	want int
}

// envelope is MAIL FROM and one RCPT TO per recipient, with the MAIL
// parameters go-mail's Client.Mail would add for the relay's extensions
// (8BITMIME, SMTPUTF8). The addresses come from mail.Address and carry
// no CR or LF.
func envelope(client *smtp.Client, from string, rcpts []string) []command {
	mailLine := "MAIL FROM:" + from
	if ok, _ := client.Extension("8BITMIME"); ok {
		mailLine += " BODY=8BITMIME"
	}
	if ok, _ := client.Extension("SMTPUTF8"); ok {
		mailLine += " SMTPUTF8"
	}
	cmds := []command{{name: "MAIL FROM", line: mailLine, want: 250}}
	for _, r := range rcpts {
		cmds = append(cmds, command{name: "RCPT TO", line: "RCPT TO:" + r, want: 25})
	}
	return cmds
}

// exchange writes cmds in one write and reads their replies in order, as
// RFC 2920 §3.1 asks of a pipelining client: every reply is read and
// checked, each within the timeout from the previous one (RFC 5321
// §4.5.3.2), and the first command refused is the error. A connection
// that fails ends the reading; a DATA answered 354 after an earlier
// refusal is not followed by any data: the caller closes the connection,
// which aborts the transaction (RFC 5321 §3.3) where RFC 2920's single dot
// would ask a relay that wrongly took DATA to end an empty message.
func (s *Sender) exchange(c *conn, cmds []command) error {
	w := c.client.Text.W
	for _, cmd := range cmds {
		if strings.ContainsAny(cmd.line, "\r\n") {
			return permanent(fmt.Errorf("smtp %s: a line must not contain CR or LF", cmd.name))
		}
		_, _ = w.WriteString(cmd.line)
		_, _ = w.WriteString("\r\n")
	}
	if err := w.Flush(); err != nil {
		return transactionError{cmds[0].name, err}
	}
	var refused error
	for i, cmd := range cmds {
		if i > 0 {
			// The relay answers one command after the other: each reply
			// gets the timeout from the one before.
			if err := c.rc.awaitReply(); err != nil {
				return transactionError{cmd.name, err}
			}
		}
		_, _, err := c.client.Text.ReadResponse(cmd.want)
		if err == nil {
			continue
		}
		if ReplyCode(err) == 0 {
			// No reply (timeout, closed connection, garbled): nothing
			// after it can be read.
			if refused != nil {
				return refused
			}
			return transactionError{cmd.name, err}
		}
		if refused == nil {
			refused = transactionError{cmd.name, err}
		}
	}
	return refused
}

// conn is an open connection, the deadline-keeping connection under it,
// and when it was last used.
type conn struct {
	client *smtp.Client
	rc     *replyConn
	used   time.Time
}

// trustFor is how long after its last use a connection is sent on without
// a NOOP check first.
const trustFor = 2 * time.Second

// conn returns an open connection: an idle one (checked with NOOP unless
// it was used moments ago) or a new one.
func (s *Sender) conn(ctx context.Context) (*conn, error) {
	for {
		select {
		case c := <-s.idle:
			if time.Since(c.used) < trustFor {
				return c, nil
			}
			stop := context.AfterFunc(ctx, func() { _ = c.rc.Close() })
			err := c.client.Noop()
			if stop() && err == nil {
				return c, nil
			}
			// Gone stale (or ctx is done): try the next one.
			_ = c.rc.Close()
		default:
			return s.dial(ctx)
		}
	}
}

// dialedKey carries, in the dial's context, where dialTCP leaves the
// connection it made.
type dialedKey struct{}

// dial opens a connection: TCP (and TLS), greeting, EHLO, STARTTLS, AUTH.
// When ctx is done meanwhile, the connection is closed.
func (s *Sender) dial(ctx context.Context) (*conn, error) {
	var rc atomic.Pointer[replyConn]
	stop := context.AfterFunc(ctx, func() {
		if c := rc.Load(); c != nil {
			_ = c.Close()
		}
	})
	defer stop()
	client, err := s.client.DialToSMTPClientWithContext(context.WithValue(ctx, dialedKey{}, &rc))
	if err != nil {
		if c := rc.Load(); c != nil {
			_ = c.Close()
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("connect to %s interrupted: %w (%v)", s.Addr(), context.Cause(ctx), err)
		}
		return nil, fmt.Errorf("connect to %s: %w", s.Addr(), err)
	}
	return &conn{client: client, rc: rc.Load()}, nil
}

// dialTCP is go-mail's dialer: a TCP connection under a replyConn, and TLS
// over it for SMTP_TLS=tls (STARTTLS is go-mail's, over the same replyConn).
func (s *Sender) dialTCP(ctx context.Context, network, addr string) (net.Conn, error) {
	tcp, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	rc := newReplyConn(tcp, s.timeout)
	if p, ok := ctx.Value(dialedKey{}).(*atomic.Pointer[replyConn]); ok {
		p.Store(rc)
	}
	if s.implicitTLS {
		return tls.Client(rc, s.tlsConfig), nil
	}
	return rc, nil
}

func (s *Sender) release(c *conn) {
	c.used = time.Now()
	select {
	case s.idle <- c:
	default:
		_ = c.client.Quit()
		_ = c.rc.Close()
	}
}

// Close says goodbye on every idle connection.
func (s *Sender) Close() {
	for {
		select {
		case c := <-s.idle:
			_ = c.client.Quit()
			_ = c.rc.Close()
		default:
			return
		}
	}
}
