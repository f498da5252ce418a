package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The public SMTP ceiling of phase 3: Postfix's smtp-source (Debian
// package postfix; scripts/ci-deps.sh installs it), as many parallel
// sessions (-s) as the worker's WORKER_CONCURRENCY, each kept open between
// messages (-d) as the worker keeps its connections, sending the same
// number of messages into the same Mailpit. Each message is one file (-F)
// composed as the worker composes its messages, so both send the same
// bytes. Anyone can rerun the command line recorded in the results.

// smtpSourceBin is smtp-source on PATH, else where Debian puts it.
func smtpSourceBin() string {
	if p, err := exec.LookPath("smtp-source"); err == nil {
		return p
	}
	return "/usr/sbin/smtp-source"
}

// runSMTPSource sends n messages with smtp-source in conns sessions to
// addr (host:port) and times the whole run: the ceiling, each
// message composed as the worker composes its messages (composeMail). dir
// holds the message file.
func runSMTPSource(ctx context.Context, addr, dir, prefix string, n, conns, round int) (smtpRun, error) {
	body, err := composeMail(prefix, 0)
	if err != nil {
		return smtpRun{Round: round, Messages: n, Connections: conns, Tool: "smtp-source"}, err
	}
	return smtpSourceFile(ctx, addr, filepath.Join(dir, "smtp-source.eml"), body, n, conns, round)
}

// smtpSourceFile sends n copies of message (CRLF line ends, as on the
// wire) with smtp-source in conns sessions to addr, through file, and
// times the whole run.
func smtpSourceFile(ctx context.Context, addr, file string, message []byte, n, conns, round int) (smtpRun, error) {
	r := smtpRun{Round: round, Messages: n, Connections: conns, Tool: "smtp-source"}
	// smtp-source ends each line it reads with CRLF itself (and escapes
	// leading dots): the file has bare LFs.
	body := bytes.ReplaceAll(message, []byte("\r\n"), []byte("\n"))
	r.AvgBytes = len(body) + bytes.Count(body, []byte("\n")) // as sent, with CRLFs
	if err := os.WriteFile(file, body, 0o644); err != nil {
		return r, err
	}
	args := []string{"-d", "-s", strconv.Itoa(conns), "-m", strconv.Itoa(n), "-F", file,
		"-f", mailFrom, "-t", mailTo, "-M", "carteiro.localhost", addr}
	r.Command = "smtp-source " + strings.Join(args, " ")
	cmd := exec.CommandContext(ctx, smtpSourceBin(), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	r.Seconds = time.Since(start).Seconds()
	if r.Seconds > 0 {
		r.Rate = float64(n) / r.Seconds
	}
	if err := ctx.Err(); err != nil {
		return r, err
	}
	if err != nil {
		r.Errors = 1
		return r, fmt.Errorf("smtp-source: %v\n%s", err, indent(tail(out.String(), 20)))
	}
	return r, nil
}
