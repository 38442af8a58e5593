// Package callers reads the registry of callers allowed to use the
// gateway, authenticates static bearer tokens against it, and finds the
// entry of a token subject verified elsewhere. Only the SHA-256 of each
// static token is stored, and tokens are compared in constant time.
package callers

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Caller is one registered caller.
type Caller struct {
	// Name identifies the caller in rate limits, logs and metric labels.
	Name string
	// Subject, when not empty, is the subject (sub claim) of the tokens
	// that authenticate the caller, such as
	// system:serviceaccount:billing:billing-api.
	Subject string
	// Rate and Burst override the gateway's default rate limit when set;
	// a Rate of zero exempts the caller from rate limiting.
	Rate  *float64
	Burst *int

	hash     [sha256.Size]byte
	hasToken bool
}

// Registry is a parsed callers file. It is immutable, so it is safe for
// concurrent use; a reload builds a new one.
type Registry struct {
	callers   []Caller
	bySubject map[string]int
}

// file and entry are the callers file's YAML.
type file struct {
	Callers []entry `yaml:"callers"`
}

type entry struct {
	Name        string   `yaml:"name"`
	TokenSHA256 string   `yaml:"token_sha256"`
	Subject     string   `yaml:"subject"`
	Rate        *float64 `yaml:"rate"`
	Burst       *int     `yaml:"burst"`
}

// A name becomes a metric label value and a log field, so it is kept to
// a short, plain set of characters.
var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// maxSubject bounds the length of a subject in the callers file.
const maxSubject = 512

// The metric labels of requests without a caller from the callers file.
// No caller may take them as a name.
const (
	// Anonymous labels requests that name no caller.
	Anonymous = "anonymous"
	// Unregistered labels callers authenticated by a token whose subject
	// has no entry, when no callers file is set.
	Unregistered = "unregistered"
)

// Parse reads a callers file. Each entry has a name and a token_sha256, a
// subject, or both. Unknown keys, duplicate names, hashes or subjects,
// malformed hashes and out-of-range limits are errors naming the entry by
// its position; no error quotes a value from the file.
func Parse(data []byte) (*Registry, error) {
	var f file
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		var te *yaml.TypeError
		switch {
		case errors.Is(err, io.EOF):
			return nil, errors.New("callers file is empty")
		case errors.As(err, &te):
			return nil, fmt.Errorf("parsing callers file: %s", typeErrors(te))
		}
		// The parser's messages may quote the file; only the position is
		// passed on.
		where := ""
		if m := yamlLine.FindString(err.Error()); m != "" {
			where = " (" + m + ")"
		}
		return nil, fmt.Errorf("parsing callers file: not valid YAML%s", where)
	}
	if err := dec.Decode(new(any)); !errors.Is(err, io.EOF) {
		return nil, errors.New("callers file must hold a single YAML document")
	}
	if len(f.Callers) == 0 {
		return nil, errors.New("callers file lists no callers")
	}
	r := &Registry{bySubject: map[string]int{}}
	names := map[string]int{}
	hashes := map[[sha256.Size]byte]int{}
	for i, c := range f.Callers {
		where := fmt.Sprintf("callers[%d]", i)
		if !validName.MatchString(c.Name) {
			return nil, fmt.Errorf("%s: name must be 1-63 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit", where)
		}
		if c.Name == Anonymous || c.Name == Unregistered {
			return nil, fmt.Errorf("%s: name is reserved for requests without a registered caller", where)
		}
		if j, dup := names[c.Name]; dup {
			return nil, fmt.Errorf("%s: name is already used by callers[%d]", where, j)
		}
		names[c.Name] = i
		caller := Caller{Name: c.Name, Rate: c.Rate, Burst: c.Burst}
		if c.TokenSHA256 == "" && c.Subject == "" {
			return nil, fmt.Errorf("%s: needs a token_sha256 or a subject", where)
		}
		if c.TokenSHA256 != "" {
			raw, err := hex.DecodeString(strings.TrimSpace(c.TokenSHA256))
			if err != nil || len(raw) != sha256.Size {
				return nil, fmt.Errorf("%s: token_sha256 must be 64 hex digits", where)
			}
			copy(caller.hash[:], raw)
			caller.hasToken = true
			if j, dup := hashes[caller.hash]; dup {
				return nil, fmt.Errorf("%s: token_sha256 is shared with callers[%d]", where, j)
			}
			hashes[caller.hash] = i
		}
		if c.Subject != "" {
			if !validSubject(c.Subject) {
				return nil, fmt.Errorf("%s: subject must be at most %d visible characters", where, maxSubject)
			}
			if j, dup := r.bySubject[c.Subject]; dup {
				return nil, fmt.Errorf("%s: subject is shared with callers[%d]", where, j)
			}
			r.bySubject[c.Subject] = i
			caller.Subject = c.Subject
		}
		if c.Rate != nil && (*c.Rate < 0 || math.IsNaN(*c.Rate) || math.IsInf(*c.Rate, 0)) {
			return nil, fmt.Errorf("%s: rate must be a number of requests per second, 0 or more", where)
		}
		if c.Burst != nil && *c.Burst < 1 {
			return nil, fmt.Errorf("%s: burst must be at least 1", where)
		}
		r.callers = append(r.callers, caller)
	}
	return r, nil
}

// validSubject reports whether sub is a plausible token subject: visible
// ASCII without spaces, at most maxSubject bytes.
func validSubject(sub string) bool {
	if len(sub) > maxSubject {
		return false
	}
	for i := 0; i < len(sub); i++ {
		if sub[i] <= ' ' || sub[i] > '~' {
			return false
		}
	}
	return true
}

var (
	yamlLine     = regexp.MustCompile(`line \d+`)
	unknownField = regexp.MustCompile(`^(line \d+): field (.*) not found in type \S+$`)
	wrongType    = regexp.MustCompile(`^(line \d+): cannot unmarshal .* into (\S+)$`)
)

// typeNames describe the Go types of the file's values in its own terms.
var typeNames = map[string]string{
	"float64": "a number", "int": "an integer", "string": "a string",
	"callers.file": "a mapping", "[]callers.entry": "a list", "callers.entry": "a mapping",
}

// typeErrors puts the YAML decoder's messages about keys and values on one
// line, says "unknown key" where it names a Go type, and leaves out the
// values it quotes.
func typeErrors(te *yaml.TypeError) string {
	msgs := make([]string, len(te.Errors))
	for i, m := range te.Errors {
		switch {
		case unknownField.MatchString(m):
			msgs[i] = unknownField.ReplaceAllString(m, `$1: unknown key "$2"`)
		case wrongType.MatchString(m):
			sub := wrongType.FindStringSubmatch(m)
			want, ok := typeNames[sub[2]]
			if !ok {
				want = "another type"
			}
			msgs[i] = sub[1] + ": value of the wrong type, want " + want
		default:
			msgs[i] = yamlLine.FindString(m) + ": value of the wrong type"
		}
	}
	return strings.Join(msgs, "; ")
}

// Len returns the number of callers.
func (r *Registry) Len() int { return len(r.callers) }

// Authenticate returns the caller whose token is token. It compares the
// token's hash with every entry in constant time and without stopping at
// a match, so timing tells nothing about which entry, if any, matched.
func (r *Registry) Authenticate(token string) (*Caller, bool) {
	sum := sha256.Sum256([]byte(token))
	found := -1
	for i := range r.callers {
		if subtle.ConstantTimeCompare(sum[:], r.callers[i].hash[:])&boolInt(r.callers[i].hasToken) == 1 {
			found = i
		}
	}
	if found < 0 {
		return nil, false
	}
	return &r.callers[found], true
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// BySubject returns the caller whose entry names the token subject sub.
func (r *Registry) BySubject(sub string) (*Caller, bool) {
	i, ok := r.bySubject[sub]
	if !ok {
		return nil, false
	}
	return &r.callers[i], true
}

// BearerToken extracts the token of an "Authorization: Bearer <token>"
// header value; the scheme is case-insensitive. It reports false for
// anything else, including an empty or oversized token or one that is not
// RFC 6750's b64token (A-Z a-z 0-9 - . _ ~ + /, then optional = padding).
func BearerToken(header string) (string, bool) {
	const prefix = "bearer "
	if len(header) <= len(prefix) || !strings.EqualFold(header[:len(prefix)], prefix) {
		return "", false
	}
	tok := strings.TrimSpace(header[len(prefix):])
	if tok == "" || len(tok) > 4096 {
		return "", false
	}
	body := strings.TrimRight(tok, "=")
	if body == "" {
		return "", false
	}
	for i := 0; i < len(body); i++ {
		if !token68[body[i]] {
			return "", false
		}
	}
	return tok, true
}

// token68 marks the bytes of RFC 9110's token68 before its trailing "=":
// a table lookup per byte, since a service-account token is about 1 KB
// read on every request.
var token68 = func() (t [256]bool) {
	for c := range t {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/'
	}
	return t
}()
