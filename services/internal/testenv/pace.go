package testenv

import (
	"bytes"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Reply is one reply of the scripted SMTP server: what Pace's function is
// asked about before the reply is written, and what Replies lists after.
type Reply struct {
	// Command is what the reply answers, in upper case: "" for the
	// greeting, "EHLO", "MAIL", "RCPT", "DATA", "." for the end of the
	// message data (the final dot), "QUIT", ...
	Command string
	// Code is the reply code: 220, 250, 354, 451, ...
	Code int
	// At is when the reply was sent, after its wait (Replies only).
	At time.Time
	// Queued is how many later commands the server had already read when
	// it wrote this reply: more than 0 when the client pipelines (RFC
	// 2920) and sent them without waiting for this reply.
	Queued int
}

// Pace sets how long the server waits before it writes each reply: f(r)
// for the reply r, every one of them, the greeting, EHLO's, MAIL's, RCPT's,
// DATA's 354 and the final dot's included. The wait comes after the server
// has decided (for the final dot, after the Reply or ReplyFor function)
// and before the first byte of the reply leaves, as with a slow relay, a
// tarpit, a postscreen greeting delay or a content scanner. f may be
// called from many connections at once; nil (or 0) answers at once.
func (s *SMTPServer) Pace(f func(Reply) time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pace = f
}

// PaceEvery makes the server wait d before every reply.
func (s *SMTPServer) PaceEvery(d time.Duration) {
	s.Pace(func(Reply) time.Duration { return d })
}

// Replies returns the replies sent so far, on every connection, in order
// (a multi-line reply once, as its last line is sent; a reply is listed
// before the client can have read it).
func (s *SMTPServer) Replies() []Reply {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Reply(nil), s.replies...)
}

// pacedListener gives the server connections that know which command each
// reply answers, so that the replies can be paced and logged.
type pacedListener struct {
	net.Listener
	s *SMTPServer
}

func (l pacedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &pacedConn{Conn: c, s: l.s}, nil
}

// pacedConn follows the client's commands as the server reads them, in
// order (a pipelining client sends several before the first reply: each
// reply answers the oldest command not yet answered), and holds each
// reply's first line for the paced wait. It understands plain text SMTP: under implicit TLS it sits above
// the TLS layer; after STARTTLS it lets the TLS records through unpaced.
type pacedConn struct {
	net.Conn
	s *SMTPServer

	mu sync.Mutex
	// line collects the command line being read; pending holds the
	// commands read and not yet answered, oldest first.
	line    []byte
	pending []string
	// answering is the command the reply being written answers.
	answering string
	// inData is set between DATA's 354 and the final dot; tail keeps the
	// last bytes of the message data, to see the dot.
	inData bool
	tail   []byte
	// inReply is set while a multi-line reply is being written.
	inReply bool
	// encrypted is set once STARTTLS was answered: from then on the
	// connection carries TLS records, neither followed nor paced.
	encrypted bool
}

// dataEnd ends the message data (RFC 5321 §4.1.1.4).
var dataEnd = []byte("\r\n.\r\n")

func (c *pacedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.mu.Lock()
	if !c.encrypted {
		c.follow(b[:n])
	}
	c.mu.Unlock()
	return n, err
}

func (c *pacedConn) follow(b []byte) {
	for len(b) > 0 {
		if c.inData {
			for i, ch := range b {
				c.tail = append(c.tail, ch)
				if len(c.tail) > len(dataEnd) {
					c.tail = c.tail[1:]
				}
				if bytes.Equal(c.tail, dataEnd) {
					c.inData, c.tail = false, nil
					c.pending = append(c.pending, ".")
					b = b[i+1:]
					break
				}
			}
			if c.inData {
				return
			}
			continue
		}
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			if len(c.line) < 1024 {
				c.line = append(c.line, b...)
			}
			return
		}
		c.line = append(c.line, b[:i]...)
		verb, _, _ := strings.Cut(strings.TrimSpace(string(c.line)), " ")
		c.pending, c.line = append(c.pending, strings.ToUpper(verb)), c.line[:0]
		b = b[i+1:]
	}
}

func (c *pacedConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	if c.encrypted {
		c.mu.Unlock()
		return c.Conn.Write(b)
	}
	first := !c.inReply
	if first {
		c.answering = ""
		if len(c.pending) > 0 {
			c.answering, c.pending = c.pending[0], c.pending[1:]
		}
	}
	r := Reply{Command: c.answering, Queued: len(c.pending)}
	if len(b) >= 3 {
		r.Code, _ = strconv.Atoi(string(b[:3]))
	}
	c.inReply = len(b) >= 4 && b[3] == '-'
	final := !c.inReply
	c.mu.Unlock()

	if r.Command == "EHLO" && c.s.opts.NoPipelining && bytes.EqualFold(bytes.TrimSpace(b[min(4, len(b)):]), []byte("PIPELINING")) {
		// Left out of the reply (never its last line: go-smtp ends
		// the list with SIZE).
		return len(b), nil
	}
	if first {
		c.s.mu.Lock()
		pace, drop := c.s.pace, c.s.drop
		c.s.mu.Unlock()
		if drop != nil && drop(r) {
			_ = c.Conn.Close()
			return 0, net.ErrClosed
		}
		if pace != nil {
			if d := pace(r); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-c.s.closed:
					t.Stop()
				}
			}
		}
	}
	if final {
		// Followed and logged as it leaves, so that a client that has
		// read the reply finds it in Replies.
		c.mu.Lock()
		switch {
		case r.Code == 354:
			// The data may be empty: the final dot then follows at once.
			c.inData, c.tail = true, []byte("\r\n")
		case r.Code == 220 && r.Command == "STARTTLS":
			c.encrypted = true
		}
		c.mu.Unlock()
		r.At = time.Now()
		c.s.mu.Lock()
		c.s.replies = append(c.s.replies, r)
		c.s.mu.Unlock()
	}
	return c.Conn.Write(b)
}
