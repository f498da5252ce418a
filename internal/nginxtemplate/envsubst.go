package nginxtemplate

import (
	"fmt"
	"regexp"
	"strings"
)

// Variables returns the variables of environ ("NAME=value" entries, as
// os.Environ gives them) whose names match filter, a regular expression
// searched anywhere in the name (NGINX_ENVSUBST_FILTER; "" matches every
// name). When a name appears twice the first entry wins, as getenv(3) reads
// it. A filter that does not compile is an error naming it.
func Variables(environ []string, filter string) (map[string]string, error) {
	re, err := regexp.Compile(filter)
	if err != nil {
		return nil, fmt.Errorf("NGINX_ENVSUBST_FILTER %q: %w", filter, err)
	}
	vars := map[string]string{}
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || name == "" || !re.MatchString(name) {
			continue
		}
		if _, seen := vars[name]; !seen {
			vars[name] = value
		}
	}
	return vars, nil
}

// Expand replaces $NAME and ${NAME} in text with vars[NAME] for every NAME
// that vars holds, as gettext's `envsubst SHELL-FORMAT` does when
// SHELL-FORMAT lists exactly those names. Everything else is copied as it
// is: names vars does not hold, ${NAME:-word} and other shell forms, a
// "${" with no valid name and closing brace, a "$" not followed by a name.
func Expand(text string, vars map[string]string) string {
	var b strings.Builder
	b.Grow(len(text))
	for {
		i := strings.IndexByte(text, '$')
		if i < 0 {
			b.WriteString(text)
			return b.String()
		}
		b.WriteString(text[:i])
		text = text[i:]
		// text[0] is '$'.
		braced := len(text) > 1 && text[1] == '{'
		start := 1
		if braced {
			start = 2
		}
		end := start
		for end < len(text) && isNameByte(text[end], end == start) {
			end++
		}
		if end == start {
			// No name: the '$' is an ordinary character.
			b.WriteByte('$')
			text = text[1:]
			continue
		}
		name := text[start:end]
		ref := text[:end]
		if braced {
			if end >= len(text) || text[end] != '}' {
				// "${NAME" without its brace (or "${NAME:-x}"): not a reference.
				b.WriteString(ref)
				text = text[end:]
				continue
			}
			ref = text[:end+1]
		}
		if v, ok := vars[name]; ok {
			b.WriteString(v)
		} else {
			b.WriteString(ref)
		}
		text = text[len(ref):]
	}
}

// isNameByte reports whether c may appear in a variable name: a letter or
// an underscore, or (after the first character) a digit.
func isNameByte(c byte, first bool) bool {
	switch {
	case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		return true
	case '0' <= c && c <= '9':
		return !first
	}
	return false
}
