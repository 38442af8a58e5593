package callers

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
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
		{"not-yaml.yaml", "parsing callers file: not valid YAML (line 2)"},
		{"two-documents.yaml", "callers file must hold a single YAML document"},
		{"unknown-key.yaml", `parsing callers file: line 4: unknown key "rates"`},
		{"unknown-top-key.yaml", `parsing callers file: line 1: unknown key "caller"`},
		{"rate-not-number.yaml", "parsing callers file: line 4: value of the wrong type, want a number"},
		{"subject-not-string.yaml", "parsing callers file: line 3: value of the wrong type, want a string"},
		{"bad-name.yaml", `callers[0]: name must be 1-63 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit`},
		{"missing-name.yaml", `callers[0]: name must be 1-63 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit`},
		{"reserved-name.yaml", `callers[0]: name is reserved for requests without a registered caller`},
		{"reserved-unregistered.yaml", `callers[0]: name is reserved for requests without a registered caller`},
		{"duplicate-name.yaml", `callers[1]: name is already used by callers[0]`},
		{"duplicate-hash.yaml", `callers[1]: token_sha256 is shared with callers[0]`},
		{"duplicate-subject.yaml", `callers[1]: subject is shared with callers[0]`},
		{"short-hash.yaml", `callers[0]: token_sha256 must be 64 hex digits`},
		{"missing-hash.yaml", `callers[0]: needs a token_sha256 or a subject`},
		{"plain-token.yaml", `callers[0]: token_sha256 must be 64 hex digits`},
		{"subject-with-space.yaml", `callers[0]: subject must be at most 512 visible characters`},
		{"negative-rate.yaml", `callers[0]: rate must be a number of requests per second, 0 or more`},
		{"infinite-rate.yaml", `callers[0]: rate must be a number of requests per second, 0 or more`},
		{"zero-burst.yaml", `callers[0]: burst must be at least 1`},
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
	for f, data := range testFiles(t) {
		if _, err := Parse(data); err != nil && strings.Contains(strings.ToLower(err.Error()), h[:16]) {
			t.Errorf("%s: error shows the hash: %v", f, err)
		}
	}
}

// TestParseErrorsQuoteNoValue checks that no error about a bad file
// quotes a value from it: a value may be a token pasted in the wrong
// place.
func TestParseErrorsQuoteNoValue(t *testing.T) {
	for f, data := range testFiles(t) {
		_, perr := Parse(data)
		if perr == nil {
			continue
		}
		var doc yaml.Node
		if yaml.Unmarshal(data, &doc) != nil {
			// Not YAML: look for every word of the file instead.
			for _, w := range strings.FieldsFunc(string(data), func(r rune) bool { return strings.ContainsRune(" \n:[]-", r) }) {
				if len(w) >= 4 && w != "callers" && strings.Contains(perr.Error(), w) {
					t.Errorf("%s: error %q quotes %q", f, perr, w)
				}
			}
			continue
		}
		for _, v := range scalarValues(&doc) {
			if len(v) >= 4 && strings.Contains(perr.Error(), v) {
				t.Errorf("%s: error %q quotes the value %q", f, perr, v)
			}
		}
	}
}

// testFiles reads every file of testdata/*.yaml, by name.
func testFiles(t *testing.T) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string][]byte, len(files))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[f] = data
	}
	return out
}

// scalarValues returns the values, not the keys, of the scalars under n.
func scalarValues(n *yaml.Node) []string {
	var out []string
	switch n.Kind {
	case yaml.ScalarNode:
		out = append(out, n.Value)
	case yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 {
			out = append(out, scalarValues(n.Content[i])...)
		}
	default:
		for _, c := range n.Content {
			out = append(out, scalarValues(c)...)
		}
	}
	return out
}

func TestParseSubjects(t *testing.T) {
	r, err := parseFile(t, "subjects.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		sub, name string
		rate      *float64
		burst     *int
	}{
		{"system:serviceaccount:billing:billing-api", "billing-api", new(5.0), nil},
		{"system:serviceaccount:reports:nightly", "reports", nil, new(3)},
		{"0oa1b2c3d4e5f6g7h8i9", "partner-sync", nil, nil},
	}
	for _, tc := range cases {
		c, ok := r.BySubject(tc.sub)
		if !ok {
			t.Errorf("BySubject(%q): not found", tc.sub)
			continue
		}
		if c.Name != tc.name || c.Subject != tc.sub || !equalPtr(c.Rate, tc.rate) || !equalPtr(c.Burst, tc.burst) {
			t.Errorf("BySubject(%q) = %+v; want name %s, rate %v, burst %v", tc.sub, c, tc.name, tc.rate, tc.burst)
		}
	}
	for _, sub := range []string{
		"", "system:serviceaccount:billing:billing-api ", "SYSTEM:SERVICEACCOUNT:BILLING:BILLING-API",
		"billing/billing-api", "billing-api", "system:serviceaccount:billing",
	} {
		if c, ok := r.BySubject(sub); ok {
			t.Errorf("BySubject(%q) found %s", sub, c.Name)
		}
	}
	// The entry with both authenticates its static token too, as itself.
	if c, ok := r.Authenticate(tokenOne); !ok || c.Name != "reports" {
		t.Errorf("static token of reports: %v, %v", c, ok)
	}
	// Entries without a token_sha256 match no token, whatever its hash.
	for _, tok := range []string{"", "billing-api", "system:serviceaccount:billing:billing-api"} {
		if c, ok := r.Authenticate(tok); ok {
			t.Errorf("Authenticate(%q) = %s", tok, c.Name)
		}
	}
	if r.Len() != 3 {
		t.Errorf("Len %d; want 3", r.Len())
	}
}

func equalPtr[T comparable](a, b *T) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

func TestRegistryWithoutSubjects(t *testing.T) {
	r, err := parseFile(t, "good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := r.BySubject(""); ok {
		t.Errorf("empty subject found %s", c.Name)
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
	for _, s := range []string{
		"Bearer abc", "bearer a=", "Basic x", "", "Bearer  a b",
		"Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYS0xIn0.eyJzdWIiOiJzIn0.c2ln",
		"Bearer eyJhbGciOiJub25lIn0.e30.", "Bearer a.b.c.d", "Bearer ..", "Bearer\ta.b.c",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		tok, ok := BearerToken(header)
		if !ok {
			return
		}
		if tok == "" || strings.ContainsAny(tok, " \t\r\n,\"") || len(tok) > 4096 ||
			!strings.Contains(header, tok) {
			t.Errorf("BearerToken(%q) accepted %q", header, tok)
		}
	})
}
