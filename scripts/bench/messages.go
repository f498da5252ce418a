package main

import (
	"strconv"
	"strings"
)

// benchText is every bench message's body (mensagem): one size for the
// accept path, the pgbench ceiling, the queued deliveries and the SMTP
// ceiling. ASCII, within the 250-character limit.
const benchText = "Ola, gostaria de saber se o formulario de contato esta funcionando. " +
	"Esta mensagem foi gerada por make bench para medir o caminho inteiro: nginx, api, " +
	"Postgres, Redis, worker e SMTP. Obrigado!"

// subject returns the subject (assunto) of message i of a run whose
// messages all start with prefix (how the bench finds a run's rows).
func subject(prefix string, i int) string { return prefix + strconv.Itoa(i) }

// jsonBody is the POST body for one message. Prefixes and benchText are
// ASCII without quotes or backslashes: nothing needs escaping.
func jsonBody(prefix string, i int) string {
	var b strings.Builder
	b.Grow(len(prefix) + len(benchText) + 40)
	b.WriteString(`{"assunto":"`)
	b.WriteString(subject(prefix, i))
	b.WriteString(`","mensagem":"`)
	b.WriteString(benchText)
	b.WriteString(`"}`)
	return b.String()
}

// runPrefix is the subject prefix of one run: "bench <phase> <mode> r<round> ".
func runPrefix(phase, mode string, round int) string {
	return "bench " + phase + " " + mode + " r" + strconv.Itoa(round) + " "
}
