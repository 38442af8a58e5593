package proxy

import "unicode/utf8"

// appendJSONString appends s as a JSON string for an answer's body. It
// escapes as encoding/json does, < > and & included, so that no answer
// carries markup even where a client pastes it into a page.
func appendJSONString(b []byte, s string) []byte { return appendJSON(b, s, &answerSafe) }

// appendLogString appends s as a JSON string for a log line, escaped
// exactly as slog's JSON handler does, so that a hand-written access line
// is byte for byte what slog would write.
func appendLogString(b []byte, s string) []byte { return appendJSON(b, s, &jsonSafe) }

// appendJSON appends s as a JSON string, copying the bytes safe marks as
// they are: quotes, backslashes and other ASCII bytes not marked safe are
// escaped; invalid UTF-8 becomes U+FFFD; U+2028 and U+2029 are escaped.
func appendJSON(b []byte, s string, safe *[256]bool) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if safe[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// jsonSafe marks the bytes appendLogString copies as they are: printable
// ASCII but the quote and the backslash.
var jsonSafe = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// answerSafe is jsonSafe less the characters HTML treats specially.
var answerSafe = func() (t [256]bool) {
	t = jsonSafe
	t['<'], t['>'], t['&'] = false, false, false
	return t
}()
