package bluetape

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
)

// MaxSignupURLLen is the longest signUpUrl accepted, in bytes.
const MaxSignupURLLen = 2048

// signupKey is the one key BlueTape's 200 body must carry.
const signupKey = "signUpUrl"

// ErrInvalidSignup is wrapped by every error of DecodeSignup and
// CheckSignupURL. Its text and theirs are fixed sentences: they never quote
// the upstream's bytes, which could hold a credential.
var ErrInvalidSignup = errors.New("invalid signup answer")

func invalid(reason string) error { return fmt.Errorf("%w: %s", ErrInvalidSignup, reason) }

// DecodeSignup reads BlueTape's 200 body and returns its signUpUrl. The
// body must be one JSON object with exactly one member named signUpUrl
// (matched case-sensitively) whose value is a string that CheckSignupURL
// accepts with secrets. Other members are allowed, as long as no name
// repeats within an object (anywhere in the body) and none differs from
// signUpUrl only in case, since parsers disagree on which of two such
// members counts. Nothing may follow the object but white space.
//
// secrets are the credentials in force; empty ones are ignored. The
// caller bounds the size of body.
func DecodeSignup(body []byte, secrets ...string) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return "", invalid("not valid JSON")
	}
	if tok != json.Delim('{') {
		return "", invalid("not a JSON object")
	}
	var (
		signup string
		found  bool
		// One frame per open object or array; frames[0] is the body.
		frames = []frame{{keys: map[string]struct{}{}, object: true, wantKey: true}}
		key    string
	)
	for len(frames) > 0 {
		tok, err := dec.Token()
		if err != nil {
			return "", invalid("not valid JSON")
		}
		top := &frames[len(frames)-1]
		if top.object && top.wantKey {
			if tok == json.Delim('}') {
				frames = frames[:len(frames)-1]
				valueDone(frames)
				continue
			}
			// Inside an object the decoder returns only names here.
			key = tok.(string)
			if _, dup := top.keys[key]; dup {
				if len(frames) == 1 && key == signupKey {
					return "", invalid("signUpUrl appears twice")
				}
				return "", invalid("a name appears twice in one object")
			}
			if len(frames) == 1 && key != signupKey && strings.EqualFold(key, signupKey) {
				return "", invalid("a name differs from signUpUrl only in case")
			}
			top.keys[key] = struct{}{}
			top.wantKey = false
			continue
		}
		if len(frames) == 1 && key == signupKey {
			s, ok := tok.(string)
			if !ok {
				return "", invalid("signUpUrl is not a string")
			}
			signup, found = s, true
		}
		switch tok {
		case json.Delim('{'):
			frames = append(frames, frame{keys: map[string]struct{}{}, object: true, wantKey: true})
		case json.Delim('['):
			frames = append(frames, frame{})
		case json.Delim(']'):
			frames = frames[:len(frames)-1]
			valueDone(frames)
		default:
			valueDone(frames)
		}
	}
	if _, err := dec.Token(); err != io.EOF {
		return "", invalid("data after the JSON object")
	}
	if !found {
		return "", invalid("no signUpUrl")
	}
	if err := CheckSignupURL(signup, secrets...); err != nil {
		return "", err
	}
	return signup, nil
}

// frame is an open object or array while DecodeSignup walks the body.
type frame struct {
	keys    map[string]struct{} // names seen so far in an object
	object  bool
	wantKey bool // the next token of an object is a name or its end
}

// valueDone records that a whole value ended inside the innermost frame:
// an object expects a name next.
func valueDone(frames []frame) {
	if n := len(frames); n > 0 && frames[n-1].object {
		frames[n-1].wantKey = true
	}
}

// CheckSignupURL reports whether u may be given to a caller as a signup
// URL: an absolute http or https URL with a host and no user information,
// at most MaxSignupURLLen bytes of visible ASCII, that holds none of
// secrets. A secret is looked for in u as it is and in every stage of
// percent-decoding it, ignoring letter case, since a host or an escaped
// query hides a credential as well as a plain one. Empty secrets are
// ignored. The same check applies to BlueTape's answers and to entries
// read back from a shared cache.
//
// A very short credential makes many URLs fail: a one-character account
// id refuses every URL holding that character.
func CheckSignupURL(u string, secrets ...string) error {
	switch {
	case u == "":
		return invalid("signUpUrl is empty")
	case len(u) > MaxSignupURLLen:
		return invalid(fmt.Sprintf("signUpUrl is longer than %d bytes", MaxSignupURLLen))
	case !visibleASCII(u):
		return invalid("signUpUrl holds a character that is not visible ASCII")
	}
	p, err := url.Parse(u)
	switch {
	case err != nil:
		// url.Parse's error quotes its input.
		return invalid("signUpUrl is not a valid URL")
	case p.Scheme != "http" && p.Scheme != "https":
		return invalid("signUpUrl is not an http or https URL")
	case p.Opaque != "" || p.Host == "" || p.Hostname() == "":
		return invalid("signUpUrl has no host")
	case p.User != nil:
		return invalid("signUpUrl has user information")
	case holdsSecret(u, secrets):
		return invalid("signUpUrl holds a configured credential")
	}
	return nil
}

func visibleASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// holdsSecret reports whether u, or any stage of percent-decoding it,
// holds one of secrets, ignoring case.
func holdsSecret(u string, secrets []string) bool {
	lowered := make([]string, 0, len(secrets))
	for _, s := range secrets {
		if s != "" {
			lowered = append(lowered, asciiLower(s))
		}
	}
	if len(lowered) == 0 {
		return false
	}
	for form := asciiLower(u); ; {
		for _, s := range lowered {
			if strings.Contains(form, s) {
				return true
			}
		}
		next := percentDecode(form)
		if next == form {
			return false
		}
		// Each stage is shorter, so this ends.
		form = asciiLower(next)
	}
}

// percentDecode decodes every well-formed %XX of s and keeps anything
// else as it is, unlike url.PathUnescape, which gives up on the whole
// string at the first malformed escape that a query may legally hold.
func percentDecode(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// asciiLower maps A-Z to a-z and keeps every other byte, so that the
// length never changes (strings.ToLower rewrites invalid UTF-8).
func asciiLower(s string) string {
	i := strings.IndexFunc(s, func(r rune) bool { return 'A' <= r && r <= 'Z' })
	if i < 0 {
		return s
	}
	b := []byte(s)
	for ; i < len(b); i++ {
		if 'A' <= b[i] && b[i] <= 'Z' {
			b[i] += 'a' - 'A'
		}
	}
	return string(b)
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
