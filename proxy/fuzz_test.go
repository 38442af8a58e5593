package proxy

import (
	"regexp"
	"strings"
	"testing"
)

// idRule is the contract's id rule, written independently of ValidID.
var idRule = regexp.MustCompile(`^[A-Za-z0-9._~-]{1,128}$`)

// FuzzValidID checks ValidID against the contract's rule. The upstream
// URL built for any id is fuzzed in package bluetape.
func FuzzValidID(f *testing.F) {
	for _, id := range []string{
		"abc-123", "97bee7a043b58084", ".", "..", "...", "a/b", "../admin", "a?x=1", "a#frag",
		"%2e%2e", "a%2Fb", "", " ", "a b", "\x00", "ä", "~user", strings.Repeat("x", 128),
		strings.Repeat("x", 129), "a;b", "a\r\nX-Bluetape-Key: x", "//evil.example/", "@evil", ":8080",
	} {
		f.Add(id)
	}
	f.Fuzz(func(t *testing.T, id string) {
		want := idRule.MatchString(id) && id != "." && id != ".."
		if got := ValidID(id); got != want {
			t.Fatalf("ValidID(%q) = %v; want %v", id, got, want)
		}
	})
}
