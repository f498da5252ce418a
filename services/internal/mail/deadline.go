package mail

import (
	"net"
	"sync/atomic"
	"time"
)

// replyConn is the TCP connection under the SMTP client (and under TLS,
// when there is TLS). It bounds each wait for a reply instead of the whole
// conversation, as RFC 5321 §4.5.3.2 asks of a client: every write, a
// command or a block of message data, moves the deadline to now plus the
// timeout of the reply that write asks for. So replies that each arrive in
// time never fail a send, however many of them a transaction needs.
//
// go-mail (v0.8) sets one deadline per connection when it dials and checks
// the connection, and has no per-command timeout; its SetDeadline calls
// still reach the connection, and the next write moves the deadline again.
type replyConn struct {
	net.Conn
	// timeout is the wait allowed for the reply to what is written next.
	timeout atomic.Int64
}

func newReplyConn(c net.Conn, timeout time.Duration) *replyConn {
	rc := &replyConn{Conn: c}
	rc.setTimeout(timeout)
	// The greeting comes before any write (RFC 5321 §4.5.3.2.1).
	_ = c.SetDeadline(time.Now().Add(timeout))
	return rc
}

// setTimeout sets the wait allowed for the replies to the next writes.
func (c *replyConn) setTimeout(d time.Duration) { c.timeout.Store(int64(d)) }

// awaitReply gives the next reply the timeout from now: for a reply that
// follows another to pipelined commands (RFC 2920), written before.
func (c *replyConn) awaitReply() error {
	return c.Conn.SetDeadline(time.Now().Add(time.Duration(c.timeout.Load())))
}

func (c *replyConn) Write(b []byte) (int, error) {
	if err := c.Conn.SetDeadline(time.Now().Add(time.Duration(c.timeout.Load()))); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}
