// Package callers reads the registry of callers allowed to use the
// gateway and authenticates bearer tokens against it. Only the SHA-256 of
// each token is stored, and tokens are compared in constant time.
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
	// Rate and Burst override the gateway's default rate limit when set;
	// a Rate of zero exempts the caller from rate limiting.
	Rate  *float64
	Burst *int

	hash [sha256.Size]byte
}

// Registry is a parsed callers file. It is immutable, so it is safe for
// concurrent use; a reload builds a new one.
type Registry struct {
	callers []Caller
}

// file and entry are the callers file's YAML.
type file struct {
	Callers []entry `yaml:"callers"`
}

type entry struct {
	Name        string   `yaml:"name"`
	TokenSHA256 string   `yaml:"token_sha256"`
	Rate        *float64 `yaml:"rate"`
	Burst       *int     `yaml:"burst"`
}

// A name becomes a metric label value and a log field, so it is kept to
// a short, plain set of characters.
var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// Anonymous is the metric label of requests without a registered caller,
// so no caller may take it as a name.
const Anonymous = "anonymous"

// Parse reads a callers file. Unknown keys, duplicate names or hashes,
// malformed hashes and out-of-range limits are errors naming the entry.
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
		return nil, fmt.Errorf("parsing callers file: %w", err)
	}
	if err := dec.Decode(new(any)); !errors.Is(err, io.EOF) {
		return nil, errors.New("callers file must hold a single YAML document")
	}
	if len(f.Callers) == 0 {
		return nil, errors.New("callers file lists no callers")
	}
	r := &Registry{}
	names := map[string]bool{}
	hashes := map[[sha256.Size]byte]bool{}
	for i, c := range f.Callers {
		where := fmt.Sprintf("callers[%d]", i)
		if !validName.MatchString(c.Name) {
			return nil, fmt.Errorf("%s: name %q must be 1-63 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit", where, c.Name)
		}
		if c.Name == Anonymous {
			return nil, fmt.Errorf("%s: name %q is reserved for requests without a caller", where, c.Name)
		}
		where = fmt.Sprintf("caller %q", c.Name)
		if names[c.Name] {
			return nil, fmt.Errorf("%s: listed twice", where)
		}
		names[c.Name] = true
		raw, err := hex.DecodeString(strings.TrimSpace(c.TokenSHA256))
		if err != nil || len(raw) != sha256.Size {
			return nil, fmt.Errorf("%s: token_sha256 must be 64 hex digits", where)
		}
		var h [sha256.Size]byte
		copy(h[:], raw)
		if hashes[h] {
			return nil, fmt.Errorf("%s: token_sha256 is shared with another caller", where)
		}
		hashes[h] = true
		if c.Rate != nil && (*c.Rate < 0 || math.IsNaN(*c.Rate) || math.IsInf(*c.Rate, 0)) {
			return nil, fmt.Errorf("%s: rate must be a number of requests per second, 0 or more", where)
		}
		if c.Burst != nil && *c.Burst < 1 {
			return nil, fmt.Errorf("%s: burst must be at least 1", where)
		}
		r.callers = append(r.callers, Caller{Name: c.Name, Rate: c.Rate, Burst: c.Burst, hash: h})
	}
	return r, nil
}

var unknownField = regexp.MustCompile(`^(line \d+): field (.*) not found in type \S+$`)

// typeErrors puts the YAML decoder's messages about keys and values on one
// line, and says "unknown key" where it names a Go type.
func typeErrors(te *yaml.TypeError) string {
	msgs := make([]string, len(te.Errors))
	for i, m := range te.Errors {
		msgs[i] = unknownField.ReplaceAllString(m, `$1: unknown key "$2"`)
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
		if subtle.ConstantTimeCompare(sum[:], r.callers[i].hash[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return nil, false
	}
	return &r.callers[found], true
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
		c := body[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '.', c == '_', c == '~', c == '+', c == '/':
		default:
			return "", false
		}
	}
	return tok, true
}
