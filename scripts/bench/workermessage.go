package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/mail"
)

// For information beside the ceiling (which sends a message
// composed as the worker composes its own, composeMail), phase 3 also runs
// smtp-source with a message the worker itself sent: after each drain the
// newest message Mailpit holds is taken back through its API, less the
// header fields Mailpit adds on receipt, and smtp-source sends N copies of
// it into the same Mailpit. The drain's ratio to that run compares the
// drain with a client sending byte for byte what the worker sends
// (BENCH_SMTP_SOURCE_WORKER_MESSAGE=0 leaves it out).

// receiptFields are the header fields Mailpit adds to a message it
// receives: its Received trace field and Return-Path (RFC 5321 §4.4: the
// delivering server's, never the sender's).
var receiptFields = []string{"Received", "Return-Path"}

// sentMessage returns raw, a message as Mailpit stores it (CRLF line
// ends), without the receiptFields: what its client wrote after DATA. It
// fails when raw has no header ended by an empty line, or the rest is not
// a message with a Message-ID (every message the worker sends has one).
func sentMessage(raw []byte) ([]byte, error) {
	end := bytes.Index(raw, []byte("\r\n\r\n"))
	if end < 0 {
		return nil, errors.New("no empty line after the header")
	}
	var out bytes.Buffer
	out.Grow(len(raw))
	drop := false
	for line := range bytes.Lines(raw[:end+2]) {
		if line[0] != ' ' && line[0] != '\t' { // a field starts; else it continues
			name, _, _ := bytes.Cut(line, []byte(":"))
			drop = false
			for _, f := range receiptFields {
				if bytes.EqualFold(bytes.TrimSpace(name), []byte(f)) {
					drop = true
				}
			}
		}
		if !drop {
			out.Write(line)
		}
	}
	out.Write(raw[end+2:])
	m, err := mail.ReadMessage(bytes.NewReader(out.Bytes()))
	if err != nil {
		return nil, fmt.Errorf("not a message: %w", err)
	}
	if m.Header.Get("Message-Id") == "" {
		return nil, errors.New("no Message-ID")
	}
	return out.Bytes(), nil
}

// workerMessage is the newest message Mailpit holds (one the drain just
// delivered) as its client sent it (sentMessage).
func workerMessage(ctx context.Context, mp *mailpit) ([]byte, error) {
	raw, err := mp.LatestRaw(ctx)
	if err != nil {
		return nil, err
	}
	msg, err := sentMessage(raw)
	if err != nil {
		return nil, fmt.Errorf("mailpit's newest message: %w", err)
	}
	return msg, nil
}
