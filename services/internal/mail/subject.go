package mail

import (
	"encoding/base64"
	"strings"
	"unicode/utf8"

	gomail "github.com/wneessen/go-mail"
)

// setSubject sets msg's Subject so that a mail client shows exactly
// subject. go-mail leaves pure-ASCII text unencoded, so a subject that
// itself looks like an RFC 2047 encoded word ("=?UTF-8?Q?oi=0D=0A...?=")
// would be decoded by the reader into other text (line breaks included).
// Every encoded word contains "=?": such subjects are encoded whole.
func setSubject(msg *gomail.Msg, subject string) {
	if !strings.Contains(subject, "=?") {
		msg.Subject(subject)
		return
	}
	msg.SetGenHeaderPreformatted(gomail.HeaderSubject, encodeWords(subject))
}

// encodeWords encodes s (valid UTF-8) as base64 encoded words of at most
// 72 characters each, never splitting a character, one per folded line.
// The result holds only the encoded words' characters and CRLF-space folds.
func encodeWords(s string) string {
	const maxBytes = 45 // 60 base64 characters, plus "=?UTF-8?B?" and "?="
	var words []string
	for s != "" {
		n := min(len(s), maxBytes)
		for n < len(s) && n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		if n == 0 {
			n = min(len(s), maxBytes)
		}
		words = append(words, "=?UTF-8?B?"+base64.StdEncoding.EncodeToString([]byte(s[:n]))+"?=")
		s = s[n:]
	}
	return strings.Join(words, "\r\n ")
}
