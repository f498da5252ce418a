package chaos

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/carteiro/carteiro/services/internal/testenv"
)

// scale picks a size: the short one for `make test`, the full one with
// CHAOS_SCALE=full (`make chaos`).
func scale[T any](short, full T) T {
	if strings.EqualFold(os.Getenv("CHAOS_SCALE"), "full") {
		return full
	}
	return short
}

var reportMu sync.Mutex

// appendReport adds lines to the CHAOS_REPORT file, when set.
func appendReport(t *testing.T, line string) {
	path := os.Getenv("CHAOS_REPORT")
	if path == "" {
		return
	}
	reportMu.Lock()
	defer reportMu.Unlock()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Logf("CHAOS_REPORT: %v", err)
		return
	}
	defer f.Close()
	fmt.Fprintln(f, line)
}

// report prints a scenario's result line: in the test log and on stdout
// (shown by go test -v, or without -v in directory mode), and in the
// CHAOS_REPORT file.
func report(t *testing.T, line string) {
	t.Helper()
	t.Log(line)
	fmt.Fprintln(os.Stdout, line)
	appendReport(t, line)
}

// note records a figure: in the test log and, indented, in CHAOS_REPORT.
func note(t *testing.T, format string, args ...any) {
	t.Helper()
	line := fmt.Sprintf(format, args...)
	t.Log(line)
	appendReport(t, "    "+line)
}

// inbox is where delivered mail lands.
type inbox interface {
	// counts maps each Message-ID (without angle brackets) to the number
	// of mails that carry it.
	counts() (map[string]int, error)
}

func normMessageID(s string) string {
	return strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(s), "<"), ">")
}

// smtpInbox is a testenv SMTP server's accepted mail.
type smtpInbox struct{ s *testenv.SMTPServer }

func (i smtpInbox) counts() (map[string]int, error) {
	out := map[string]int{}
	for _, m := range i.s.Messages() {
		out[normMessageID(m.Header.Get("Message-ID"))]++
	}
	return out, nil
}

// mailpitInbox reads Mailpit's API page by page.
type mailpitInbox struct{ url string }

var apiClient = &http.Client{Timeout: 20 * time.Second}

func (i mailpitInbox) counts() (map[string]int, error) {
	const page = 1000
	for try := 0; ; try++ {
		out := map[string]int{}
		n, total := 0, -1
		for start := 0; ; start += page {
			res, err := apiClient.Get(fmt.Sprintf("%s/api/v1/messages?start=%d&limit=%d", i.url, start, page))
			if err != nil {
				return nil, err
			}
			var list struct {
				Total    int
				Messages []struct{ MessageID string }
			}
			err = json.NewDecoder(res.Body).Decode(&list)
			res.Body.Close()
			if err != nil {
				return nil, fmt.Errorf("mailpit messages: %w", err)
			}
			total = list.Total
			for _, m := range list.Messages {
				out[normMessageID(m.MessageID)]++
			}
			n += len(list.Messages)
			if len(list.Messages) < page || n >= total {
				break
			}
		}
		// Pages shift when mail arrives while they are read: read again.
		if n == total || try == 5 {
			return out, nil
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// expectation is what a scenario's counts must show.
type expectation struct {
	name string
	// ids are the messages accepted (2xx) in this scenario.
	ids []string
	// maxDuplicates is how many extra copies in total the fault explains;
	// duplicateOK, when set, says which Message-IDs may have one.
	maxDuplicates int
	duplicateOK   func(messageID string) bool
	// timeout bounds the wait for every message to be delivered.
	timeout time.Duration
}

// tally is what a scenario counted.
type tally struct {
	accepted, sent, lost, duplicates int
	statuses                         map[string]int
	rows                             map[string]row
	inbox                            map[string]int
}

func (c tally) line(name string) string {
	return fmt.Sprintf("%s: accepted=%d sent=%d lost=%d duplicates=%d", name, c.accepted, c.sent, c.lost, c.duplicates)
}

func (c tally) statusLine() string {
	keys := make([]string, 0, len(c.statuses))
	for k := range c.statuses {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, c.statuses[k])
	}
	return strings.Join(parts, " ")
}

// count reads the rows and the inbox once.
func (s *stack) count(ids []string) (tally, error) {
	rows, err := s.rows()
	if err != nil {
		return tally{}, err
	}
	box, err := s.inbox.counts()
	if err != nil {
		return tally{}, err
	}
	c := tally{accepted: len(ids), statuses: map[string]int{}, rows: rows, inbox: box}
	for _, r := range rows {
		c.statuses[r.status]++
	}
	for _, id := range ids {
		n := box[id+"@"+mailDomain]
		if rows[id].status == "sent" && n > 0 {
			c.sent++
		}
		if n > 1 {
			c.duplicates += n - 1
		}
	}
	c.lost = c.accepted - c.sent
	return c, nil
}

// settle waits until every accepted message is sent and in the inbox and
// nothing is left on its way (no row queued, sending or failed), then
// counts, prints the scenario's line and checks it: no loss, no mail
// without a row, every row's Message-ID <id@domain>, duplicates only as the
// expectation allows and never more than one per message.
func (s *stack) settle(e expectation) tally {
	s.t.Helper()
	t := s.t
	if e.timeout == 0 {
		e.timeout = scale(90*time.Second, 5*time.Minute)
	}
	deadline := time.Now().Add(e.timeout)
	var c tally
	var err error
	for {
		c, err = s.count(e.ids)
		open := 0
		if err == nil {
			open = c.statuses["queued"] + c.statuses["sending"] + c.statuses["failed"]
			if c.lost == 0 && open == 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			if err != nil {
				t.Fatalf("%s: counting: %v", e.name, err)
			}
			report(t, c.line(e.name))
			note(t, "%s: rows %s", e.name, c.statusLine())
			t.Fatalf("%s: after %s, %d accepted message(s) not delivered (%s), %d row(s) still on their way\n%s",
				e.name, e.timeout, c.lost, s.sampleLost(e.ids, c), open, s.Logs())
		}
		time.Sleep(250 * time.Millisecond)
	}
	// A copy still on the wire (a duplicate) lands within moments.
	time.Sleep(500 * time.Millisecond)
	if c, err = s.count(e.ids); err != nil {
		t.Fatalf("%s: counting: %v", e.name, err)
	}
	report(t, c.line(e.name))
	note(t, "%s: rows %s", e.name, c.statusLine())

	if c.lost != 0 {
		t.Errorf("%s: %d accepted message(s) lost: %s", e.name, c.lost, s.sampleLost(e.ids, c))
	}
	known := map[string]bool{}
	for id, r := range c.rows {
		mid := id + "@" + mailDomain
		known[mid] = true
		if r.messageID != "" && r.messageID != mid {
			t.Errorf("%s: row %s has Message-ID %q, want %q", e.name, id, r.messageID, mid)
		}
	}
	for mid, n := range c.inbox {
		if !known[mid] {
			t.Errorf("%s: %d mail(s) with Message-ID %q, which no row has", e.name, n, mid)
		}
	}
	if c.duplicates > e.maxDuplicates {
		t.Errorf("%s: %d duplicate(s), want at most %d", e.name, c.duplicates, e.maxDuplicates)
	}
	for _, id := range e.ids {
		mid := id + "@" + mailDomain
		n := c.inbox[mid]
		if n > 2 {
			t.Errorf("%s: %d copies of %s, want at most 2", e.name, n, mid)
		}
		if n == 2 && e.duplicateOK != nil && !e.duplicateOK(mid) {
			t.Errorf("%s: %s was delivered twice, but the fault does not explain it", e.name, mid)
		}
	}
	return c
}

func (s *stack) sampleLost(ids []string, c tally) string {
	var b strings.Builder
	n := 0
	for _, id := range ids {
		r := c.rows[id]
		if r.status == "sent" && c.inbox[id+"@"+mailDomain] > 0 {
			continue
		}
		if n++; n > 10 {
			b.WriteString("…")
			break
		}
		fmt.Fprintf(&b, "%s (status %q, attempts %d, last_error %q, in inbox %d); ",
			id, r.status, r.attempts, r.lastError, c.inbox[id+"@"+mailDomain])
	}
	return b.String()
}

// waitIdle waits until no row is queued, sending or failed.
func (s *stack) waitIdle(timeout time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var open int
		err := s.scalar(`SELECT count(*) FROM emails WHERE status IN ('queued', 'sending', 'failed')`, &open)
		if err == nil && open == 0 {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("after %s: %d row(s) still on their way (%v)\n%s", timeout, open, err, s.Logs())
		}
		time.Sleep(250 * time.Millisecond)
	}
}
