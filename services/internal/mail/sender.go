package mail

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"strconv"
	"strings"
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
	// ID is the message's row id; the Message-ID is derived from it so a
	// repeated send carries the same Message-ID.
	ID       string
	Assunto  string
	Mensagem string
	Date     time.Time
}

// Sender sends to one fixed recipient from one fixed sender address.
type Sender struct {
	// client checks an idle connection with NOOP before using it; fresh
	// skips that round trip for a connection used moments ago.
	client *gomail.Client
	fresh  *gomail.Client
	from   string
	to     string
	domain string
	// idle holds open connections between sends.
	idle   chan idleConn
	host   string
	port   int
	tracer trace.Tracer
}

// NewSender prepares a sender; it connects lazily. poolSize is how many
// idle connections are kept (one per concurrent send is right). Each send
// is a CLIENT span of tracer (nil: no spans).
func NewSender(cfg config.SMTP, from, to string, poolSize int, tracer trace.Tracer) (*Sender, error) {
	if tracer == nil {
		tracer = noop.NewTracerProvider().Tracer("")
	}
	opts := []gomail.Option{
		gomail.WithPort(cfg.Port),
		gomail.WithTimeout(cfg.Timeout),
		gomail.WithHELO("carteiro"),
		// A finished DATA ends the mail transaction; RSET would only cost
		// a round trip per message.
		gomail.WithoutRset(),
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
		opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthAutoDiscover),
			gomail.WithUsername(cfg.Username), gomail.WithPassword(cfg.Password))
	}
	c, err := gomail.NewClient(cfg.Host, opts...)
	if err != nil {
		return nil, fmt.Errorf("smtp client: %w", err)
	}
	fresh, err := gomail.NewClient(cfg.Host, append(opts, gomail.WithoutNoop())...)
	if err != nil {
		return nil, fmt.Errorf("smtp client: %w", err)
	}
	a, err := mail.ParseAddress(from)
	if err != nil {
		return nil, fmt.Errorf("sender address: %w", err)
	}
	return &Sender{
		client: c, fresh: fresh, from: from, to: to,
		domain: a.Address[strings.LastIndexByte(a.Address, '@')+1:],
		idle:   make(chan idleConn, max(1, poolSize)),
		host:   cfg.Host, port: cfg.Port, tracer: tracer,
	}, nil
}

// Addr is the relay's host:port.
func (s *Sender) Addr() string { return net.JoinHostPort(s.host, strconv.Itoa(s.port)) }

// MessageID returns the Message-ID (without angle brackets) for a row id.
func (s *Sender) MessageID(id string) string { return id + "@" + s.domain }

// Send delivers m and returns the text of the server's 250 reply. A failure is
// a *gomail.SendError or a connection error; see Permanent.
func (s *Sender) Send(ctx context.Context, m Message) (reply string, err error) {
	ctx, span := s.tracer.Start(ctx, "smtp send", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("server.address", s.host),
			attribute.Int("server.port", s.port),
			attribute.String("network.protocol.name", "smtp"),
			attribute.String("smtp.message_id", s.MessageID(m.ID)),
		))
	defer func() {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
			if code := ReplyCode(err); code != 0 {
				span.SetAttributes(attribute.Int("smtp.reply.code", code))
			}
		} else {
			// go-mail accepts only 250 as the answer to DATA.
			span.SetAttributes(attribute.Int("smtp.reply.code", 250), attribute.String("smtp.reply.text", reply))
		}
		span.End()
	}()
	msg := gomail.NewMsg(gomail.WithCharset(gomail.CharsetUTF8), gomail.WithEncoding(gomail.EncodingQP))
	if err := msg.From(s.from); err != nil {
		return "", permanent(fmt.Errorf("from: %w", err))
	}
	if err := msg.To(s.to); err != nil {
		return "", permanent(fmt.Errorf("to: %w", err))
	}
	setSubject(msg, m.Assunto)
	msg.SetMessageIDWithValue(s.MessageID(m.ID))
	msg.SetDateWithValue(m.Date)
	msg.SetUserAgent("carteiro")
	msg.SetBodyString(gomail.TypeTextPlain, m.Mensagem)

	conn, checker, err := s.conn(ctx)
	if err != nil {
		return "", err
	}
	err = checker.SendWithSMTPClient(conn, msg)
	var se *gomail.SendError
	if errors.As(err, &se) && se.Reason == gomail.ErrConnCheck {
		// The idle connection went stale; try once on a fresh one.
		_ = conn.Close()
		if conn, err = s.dial(ctx); err != nil {
			return "", err
		}
		err = s.client.SendWithSMTPClient(conn, msg)
	}
	if err != nil {
		// After a failure the connection's state is unknown: drop it.
		_ = conn.Close()
		return "", err
	}
	s.release(conn)
	return msg.ServerResponse(), nil
}

// idleConn is an open connection and when it was last used.
type idleConn struct {
	c    *smtp.Client
	used time.Time
}

// trustFor is how long after its last use a connection is sent on without
// a NOOP check first.
const trustFor = 2 * time.Second

// conn returns an open connection, and the client to send with: one that
// checks the connection first unless it was used moments ago.
func (s *Sender) conn(ctx context.Context) (*smtp.Client, *gomail.Client, error) {
	select {
	case ic := <-s.idle:
		if time.Since(ic.used) < trustFor {
			return ic.c, s.fresh, nil
		}
		return ic.c, s.client, nil
	default:
		c, err := s.dial(ctx)
		return c, s.fresh, err
	}
}

func (s *Sender) dial(ctx context.Context) (*smtp.Client, error) {
	c, err := s.client.DialToSMTPClientWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", s.Addr(), err)
	}
	return c, nil
}

func (s *Sender) release(c *smtp.Client) {
	select {
	case s.idle <- idleConn{c: c, used: time.Now()}:
	default:
		_ = c.Quit()
	}
}

// Close says goodbye on every idle connection.
func (s *Sender) Close() {
	for {
		select {
		case ic := <-s.idle:
			_ = ic.c.Quit()
		default:
			return
		}
	}
}
