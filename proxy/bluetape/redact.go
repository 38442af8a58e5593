package bluetape

import (
	"encoding/json"
	"iter"
	"strconv"
	"strings"
)

// Redacted stands in for a credential in the texts a Redactor cleans.
const Redacted = "[redacted]"

// markers are the stand-ins tried in turn: the first that holds none of
// the values to remove is used, so that a marker can never show a value.
// Only a value of "[" or "]" leaves the empty one.
var markers = [...]string{Redacted, "[REDACTED]", ""}

// Redactor removes the configured credentials from texts that the gateway
// passes on or writes down: an upstream's error reason, a log line's error
// text, a span attribute. It is safe for concurrent use.
//
// A credential is found by exact, case-sensitive match, as it is and as Go
// and JSON quote it (strconv.Quote and encoding/json escape the quote, the
// backslash and, for JSON, < > &), which is how Go's transport errors
// show malformed upstream bytes: `malformed MIME header: missing colon:
// "X-Bad <key>"`. Every run of text covered by a match becomes one
// Redacted ("[REDACTED]" when a credential is part of "[redacted]", and
// nothing when one is "[" or "]"). The output never holds a credential,
// also where one would reappear across the edge of a marker; a credential
// too short to
// be told apart from ordinary text, such as a one-character account id,
// is removed wherever it appears all the same.
type Redactor struct {
	values func() []string
}

// NewRedactor returns a Redactor for the credentials values returns. It
// is called on every use, so that rotated credentials are redacted as soon
// as they are in force; it must be cheap and safe for concurrent use.
// Empty values are ignored.
func NewRedactor(values func() []string) *Redactor {
	return &Redactor{values: values}
}

// Redact returns s without the current credentials. When s holds none, it
// returns s itself, having cost a strings.Contains per credential.
func (r *Redactor) Redact(s string) string {
	values := r.values()
	hit, quoted := false, false
	for _, v := range values {
		if v == "" {
			continue
		}
		hit = hit || strings.Contains(s, v)
		quoted = quoted || needsQuoting(v)
	}
	if !hit && !quoted {
		return s
	}
	needles := make([]string, 0, len(values))
	for _, v := range values {
		if v != "" {
			needles = append(needles, v)
			if needsQuoting(v) {
				needles = appendQuoted(needles, v)
			}
		}
	}
	if !hit {
		for _, n := range needles {
			if strings.Contains(s, n) {
				hit = true
				break
			}
		}
		if !hit {
			return s
		}
	}
	return redact(s, needles, pickMarker(needles))
}

// needsQuoting reports whether v looks different inside a Go or JSON
// string literal.
func needsQuoting(v string) bool {
	return strings.ContainsAny(v, "\"\\<>&") || !visibleASCII(v)
}

// appendQuoted appends the forms of v inside Go and JSON string literals
// where they differ from v.
func appendQuoted(needles []string, v string) []string {
	forms := []string{strconv.Quote(v), strconv.QuoteToASCII(v)}
	if js, err := json.Marshal(v); err == nil {
		forms = append(forms, string(js))
	}
	for _, f := range forms {
		f = f[1 : len(f)-1]
		if f != v && !contains(needles, f) {
			needles = append(needles, f)
		}
	}
	return needles
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func pickMarker(needles []string) string {
	for _, m := range markers {
		clean := true
		for _, n := range needles {
			if strings.Contains(m, n) {
				clean = false
				break
			}
		}
		if clean {
			return m
		}
	}
	return ""
}

// redact replaces each maximal run of s covered by an occurrence of a
// needle with marker, occurrences that overlap included. A needle can
// still appear across the edge of a marker (a needle that starts with
// "]" after "[redacted]", for one); then the ordinary text it takes in is
// covered too and the output is built again. Each round covers more of s,
// and marker holds no needle, so this ends; with ordinary credentials the
// first round is the last.
func redact(s string, needles []string, marker string) string {
	covered := make([]bool, len(s))
	for start, end := range occurrences(s, needles) {
		for k := start; k < end; k++ {
			covered[k] = true
		}
	}
	for {
		out, origin := build(s, covered, marker)
		progress := false
		for start, end := range occurrences(out, needles) {
			for k := start; k < end; k++ {
				if o := origin[k]; o >= 0 && !covered[o] {
					covered[o] = true
					progress = true
				}
			}
		}
		if !progress {
			// No needle in out: a match made only of marker bytes
			// cannot happen, as marker holds no needle.
			return out
		}
	}
}

// occurrences yields the start and end in s of each occurrence of each
// needle, overlapping ones included.
func occurrences(s string, needles []string) iter.Seq2[int, int] {
	return func(yield func(start, end int) bool) {
		for _, n := range needles {
			for i := 0; ; {
				j := strings.Index(s[i:], n)
				if j < 0 {
					break
				}
				if !yield(i+j, i+j+len(n)) {
					return
				}
				i += j + 1
			}
		}
	}
}

// build writes s with each covered run replaced by marker, and for each
// byte of the output the index in s it comes from, or -1 for a marker's.
func build(s string, covered []bool, marker string) (string, []int) {
	var b strings.Builder
	origin := make([]int, 0, len(s))
	for i := 0; i < len(s); {
		if !covered[i] {
			b.WriteByte(s[i])
			origin = append(origin, i)
			i++
			continue
		}
		for i < len(s) && covered[i] {
			i++
		}
		b.WriteString(marker)
		for range len(marker) {
			origin = append(origin, -1)
		}
	}
	return b.String(), origin
}

// RedactError returns err with the current credentials removed from its
// text, or err itself when its text holds none. The text is redacted once,
// here, with the credentials in force now, so that a value rotated out
// before the error is logged is still removed. errors.Is and errors.As see
// through the result to err; what they find there is not redacted. Nil
// stays nil.
func (r *Redactor) RedactError(err error) error {
	if err == nil {
		return nil
	}
	text := err.Error()
	red := r.Redact(text)
	if red == text {
		return err
	}
	return &redactedError{text: red, err: err}
}

// redactedError is an error whose text is redacted; Unwrap gives the
// original.
type redactedError struct {
	text string
	err  error
}

func (e *redactedError) Error() string { return e.text }
func (e *redactedError) Unwrap() error { return e.err }
