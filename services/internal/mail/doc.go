// Package mail delivers messages by SMTP with wneessen/go-mail, keeping a
// small pool of open connections so consecutive sends skip the handshake,
// and tells a worker whether a failure is worth retrying.
package mail
