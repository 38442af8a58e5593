package callers

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The tokens whose hashes testdata/good.yaml lists.
const (
	tokenOne = "token-one"
	tokenTwo = "token-two"
)

func parseFile(t *testing.T, name string) (*Registry, error) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return Parse(data)
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		file, want string
	}{
		{"empty.yaml", "callers file is empty"},
		{"no-callers.yaml", "callers file lists no callers"},
		{"not-yaml.yaml", "parsing callers file: yaml: line 2: did not find expected ',' or ']'"},
		{"two-documents.yaml", "callers file must hold a single YAML document"},
		{"unknown-key.yaml", `parsing callers file: line 4: unknown key "rates"`},
		{"unknown-top-key.yaml", `parsing callers file: line 1: unknown key "caller"`},
		{"rate-not-number.yaml", "parsing callers file: line 4: cannot unmarshal !!str `fast` into float64"},
		{"bad-name.yaml", `callers[0]: name "billing service" must be 1-63 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit`},
		{"missing-name.yaml", `callers[0]: name "" must be 1-63 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit`},
		{"reserved-name.yaml", `callers[0]: name "anonymous" is reserved for requests without a caller`},
		{"duplicate-name.yaml", `caller "billing-service": listed twice`},
		{"duplicate-hash.yaml", `caller "reports": token_sha256 is shared with another caller`},
		{"short-hash.yaml", `caller "billing-service": token_sha256 must be 64 hex digits`},
		{"missing-hash.yaml", `caller "billing-service": token_sha256 must be 64 hex digits`},
		{"plain-token.yaml", `caller "billing-service": token_sha256 must be 64 hex digits`},
		{"negative-rate.yaml", `caller "billing-service": rate must be a number of requests per second, 0 or more`},
		{"infinite-rate.yaml", `caller "billing-service": rate must be a number of requests per second, 0 or more`},
		{"zero-burst.yaml", `caller "billing-service": burst must be at least 1`},
	}
	for _, tc := range cases {
		t.Run(strings.TrimSuffix(tc.file, ".yaml"), func(t *testing.T) {
			r, err := parseFile(t, tc.file)
			if err == nil {
				t.Fatalf("parsed %d callers; want error %q", r.Len(), tc.want)
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
		})
	}
}

// TestParseErrorsNeverShowTheHash checks that an error about an entry
// names the caller, not its token hash.
func TestParseErrorsNeverShowTheHash(t *testing.T) {
	sum := sha256.Sum256([]byte(tokenOne))
	h := hex.EncodeToString(sum[:])
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(data); err != nil && strings.Contains(strings.ToLower(err.Error()), h[:16]) {
			t.Errorf("%s: error shows the hash: %v", f, err)
		}
	}
}

func TestParseGood(t *testing.T) {
	r, err := parseFile(t, "good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if r.Len() != 2 {
		t.Fatalf("Len %d; want 2", r.Len())
	}
	c, ok := r.Authenticate(tokenOne)
	if !ok || c.Name != "billing-service" {
		t.Fatalf("token one: got %v, %v; want billing-service", c, ok)
	}
	if c.Rate == nil || *c.Rate != 20 || c.Burst == nil || *c.Burst != 40 {
		t.Errorf("billing-service: rate %v burst %v; want 20 and 40", c.Rate, c.Burst)
	}
	// The second hash is in upper case in the file.
	c, ok = r.Authenticate(tokenTwo)
	if !ok || c.Name != "reports.nightly_v2" {
		t.Fatalf("token two: got %v, %v; want reports.nightly_v2", c, ok)
	}
	if c.Rate != nil || c.Burst != nil {
		t.Errorf("reports.nightly_v2: rate %v burst %v; want both unset", c.Rate, c.Burst)
	}
}

func TestAuthenticateRejects(t *testing.T) {
	r, err := parseFile(t, "good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(tokenOne))
	for name, tok := range map[string]string{
		"unknown":          "token-three",
		"empty":            "",
		"hash as token":    hex.EncodeToString(sum[:]),
		"prefix of token":  tokenOne[:5],
		"token with space": tokenOne + " ",
	} {
		if c, ok := r.Authenticate(tok); ok {
			t.Errorf("%s: authenticated as %s", name, c.Name)
		}
	}
}

func TestBearerToken(t *testing.T) {
	cases := []struct {
		name, header, want string
		ok                 bool
	}{
		{"plain", "Bearer abc123", "abc123", true},
		{"scheme is case-insensitive", "bearer abc123", "abc123", true},
		{"upper-case scheme", "BEARER abc123", "abc123", true},
		{"token68 characters", "Bearer aZ09-._~+/", "aZ09-._~+/", true},
		{"padding", "Bearer abc==", "abc==", true},
		{"extra spaces", "Bearer   abc", "abc", true},
		{"missing", "", "", false},
		{"scheme only", "Bearer", "", false},
		{"scheme and space", "Bearer ", "", false},
		{"empty token", "Bearer    ", "", false},
		{"wrong scheme", "Basic dXNlcjpwYXNz", "", false},
		{"no space", "Bearerabc", "", false},
		{"token has a space", "Bearer abc def", "", false},
		{"token has a comma", "Bearer abc,def", "", false},
		{"token has a quote", `Bearer "abc"`, "", false},
		{"padding only", "Bearer ==", "", false},
		{"padding inside", "Bearer ab=c", "", false},
		{"control character", "Bearer abc\x00", "", false},
		{"oversized", "Bearer " + strings.Repeat("a", 4097), "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := BearerToken(tc.header)
			if got != tc.want || ok != tc.ok {
				t.Errorf("BearerToken(%q) = %q, %v; want %q, %v", tc.header, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer a=", "Basic x", "", "Bearer  a b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		tok, ok := BearerToken(header)
		if !ok {
			return
		}
		if tok == "" || strings.ContainsAny(tok, " \t\r\n,\"") || len(tok) > 4096 {
			t.Errorf("BearerToken(%q) accepted %q", header, tok)
		}
	})
}
