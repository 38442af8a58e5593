package callers

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// plainName is what a caller name may be: a metric label value and a
// log field.
var plainName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

func hashOf(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// FuzzCallersParse checks that Parse never panics and that a registry it
// accepts authenticates a token only when the token's SHA-256 is listed in
// the file, and then as the caller it is listed under.
func FuzzCallersParse(f *testing.F) {
	for _, c := range []struct{ file, token string }{
		{"callers:\n  - name: billing-service\n    token_sha256: " + hashOf("test") + "\n", "test"},
		{"callers:\n  - name: billing-service\n    token_sha256: " + hashOf("test") + "\n", "other"},
		{"callers:\n  - name: a\n    token_sha256: " + strings.ToUpper(hashOf("t")) + "\n    rate: 20\n    burst: 40\n", "t"},
		{"callers:\n  - name: a\n    token_sha256: \" " + hashOf("t") + " \"\n", "t"},
		{"callers:\n  - name: a\n    token_sha256: " + hashOf("x") + "\n  - name: b\n    token_sha256: " + hashOf("y") + "\n", "y"},
		{"callers:\n  - name: a\n    token_sha256: " + hashOf("x") + "\n  - name: a\n    token_sha256: " + hashOf("y") + "\n", "y"},
		{"callers:\n  - name: a\n    token_sha256: " + hashOf("x") + "\n    extra: 1\n", "x"},
		{"callers: []\n", ""},
		{"callers:\n  - name: a\n    token_sha256: 00\n", ""},
		{"callers:\n  - name: \"a b\"\n    token_sha256: " + hashOf("") + "\n", ""},
		{"callers:\n  - name: a\n    token_sha256: " + hashOf("x") + "\n    rate: -1\n", "x"},
		{"callers:\n  - &c {name: a, token_sha256: " + hashOf("x") + "}\n  - *c\n", "x"},
		{"callers:\n  - name: a\n    subject: system:serviceaccount:ns:a\n", "system:serviceaccount:ns:a"},
		{"callers:\n  - name: a\n    subject: s\n    token_sha256: " + hashOf("s") + "\n", "s"},
		{"callers:\n  - name: a\n    subject: s\n  - name: b\n    subject: s\n", "s"},
		{"callers:\n  - name: unregistered\n    subject: s\n", "s"},
		{"callers: {}\n", ""}, {"", ""}, {"- a\n", ""}, {"callers:\n  - name: a\n---\ncallers: []\n", ""},
	} {
		f.Add([]byte(c.file), c.token)
	}
	f.Fuzz(func(t *testing.T, data []byte, token string) {
		r, err := Parse(data)
		if err != nil {
			if r != nil {
				t.Fatalf("error %v with a registry", err)
			}
			return
		}
		// The file as written, read on its own: which hash belongs to
		// which name.
		var f struct {
			Callers []struct {
				Name        string `yaml:"name"`
				TokenSHA256 string `yaml:"token_sha256"`
				Subject     string `yaml:"subject"`
			} `yaml:"callers"`
		}
		if err := yaml.Unmarshal(data, &f); err != nil {
			t.Fatalf("Parse accepted a file yaml.v3 rejects: %v", err)
		}
		listed := map[string]string{}
		subjects := map[string]string{}
		for _, c := range f.Callers {
			if c.TokenSHA256 != "" {
				listed[strings.ToLower(strings.TrimSpace(c.TokenSHA256))] = c.Name
			}
			if c.Subject != "" {
				subjects[c.Subject] = c.Name
			}
		}
		if r.Len() == 0 || r.Len() != len(f.Callers) {
			t.Fatalf("registry of %d callers from a file listing %d", r.Len(), len(f.Callers))
		}
		names := map[string]bool{}
		for i := range r.callers {
			c := &r.callers[i]
			if !plainName.MatchString(c.Name) || names[c.Name] {
				t.Fatalf("caller name %q is invalid or repeated", c.Name)
			}
			names[c.Name] = true
			if c.Name == Anonymous || c.Name == Unregistered {
				t.Fatalf("caller takes the reserved name %q", c.Name)
			}
			if !c.hasToken && c.Subject == "" {
				t.Fatalf("caller %q has neither token nor subject", c.Name)
			}
			if c.hasToken && listed[hex.EncodeToString(c.hash[:])] != c.Name {
				t.Fatalf("caller %q holds a hash the file does not give it", c.Name)
			}
			if (c.Rate != nil && *c.Rate < 0) || (c.Burst != nil && *c.Burst < 1) {
				t.Fatalf("caller %q has rate %v, burst %v", c.Name, c.Rate, c.Burst)
			}
		}
		caller, ok := r.Authenticate(token)
		name, isListed := listed[hashOf(token)]
		if ok != isListed {
			t.Fatalf("Authenticate(%q) = %v; listed: %v", token, ok, isListed)
		}
		if ok && caller.Name != name {
			t.Fatalf("token authenticates as %q; the file lists it under %q", caller.Name, name)
		}
		// The token read as a subject.
		caller, ok = r.BySubject(token)
		name, isListed = subjects[token]
		if ok != isListed || (ok && caller.Name != name) {
			t.Fatalf("BySubject(%q) = %v, %v; the file lists it under %q", token, caller, ok, name)
		}
	})
}
