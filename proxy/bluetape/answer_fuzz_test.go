package bluetape

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// visible keeps the visible ASCII bytes of s: configuration admits no
// other credential.
func visible(s string) string {
	return strings.Map(func(r rune) rune {
		if r > ' ' && r < 0x7f {
			return r
		}
		return -1
	}, s)
}

// FuzzDecodeSignup checks that whatever the upstream sends, an accepted
// URL is a JSON object's one signUpUrl, an absolute http(s) URL of at
// most 2048 bytes with a host and no user information, holding neither
// credential in any case, plainly or percent-encoded.
func FuzzDecodeSignup(f *testing.F) {
	seeds := []string{
		`{"signUpUrl": "https://www.bluetape.com/signup?id=97bee7a043b58084"}`,
		`{"signUpUrl": "https://www.bluetape.com/signup?k=` + testKey + `"}`,
		`{"signUpUrl": "https://www.bluetape.com/signup?k=%6b%2d3b9f1d2e8c7a6b5d"}`,
		`{"signUpUrl": "https://www.bluetape.com/s?a=%2561cct-77f1"}`,
		`{"signUpUrl": "https://` + strings.ToUpper(testKey) + `.evil.example/"}`,
		`{"signUpUrl": "https://www.bluetape.com@evil.example/"}`,
		`{"signUpUrl": "https://a/", "signUpUrl": "https://b/"}`,
		`{"signUpUrl": "https://a/", "signupurl": "https://b/"}`,
		`{"SignUpUrl": "https://a/"}`,
		`{"signUpUrl": "https://a/", "x": {"k": 1, "k": 2}}`,
		`{"signUpUrl": "https://a/", "x": [1, "two", {"three": null}], "n": -1.5e300}`,
		`{"signUpUrl": "` + longURL(2049) + `"}`,
		`{"signUpUrl": "javascript:alert(1)"}`,
		`{"signUpUrl": 1}`,
		`{"signUpUrl": "https://a/"} {"signUpUrl": "https://b/"}`,
		`["https://a/"]`,
		`{"sign\u0055pUrl": "https:\/\/a\/"}`,
		"{\"signUpUrl\": \"https://a/\xff\"}",
	}
	for _, s := range seeds {
		f.Add([]byte(s), testKey, testAccount)
	}
	f.Add([]byte(`{"signUpUrl": "https://www.bluetape.com/s?id=1"}`), "1", "")
	f.Fuzz(func(t *testing.T, body []byte, key, account string) {
		key, account = visible(key), visible(account)
		u, err := DecodeSignup(body, key, account)
		if err != nil {
			if u != "" {
				t.Fatalf("returned %q beside error %v", u, err)
			}
			if !errors.Is(err, ErrInvalidSignup) {
				t.Fatalf("error %v does not wrap ErrInvalidSignup", err)
			}
			return
		}
		// Numbers are read as json.Number: a valid number past float64's
		// range (1e999) is valid JSON, which DecodeSignup accepts in the
		// fields it ignores.
		var m map[string]any
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("accepted a body encoding/json refuses: %v", err)
		}
		if _, err := dec.Token(); err != io.EOF {
			t.Fatalf("accepted a body with data after its object (%v)", err)
		}
		if m["signUpUrl"] != u {
			t.Fatalf("returned %q; encoding/json reads signUpUrl as %v", u, m["signUpUrl"])
		}
		if len(u) == 0 || len(u) > 2048 {
			t.Fatalf("returned a URL of %d bytes", len(u))
		}
		p, err := url.Parse(u)
		if err != nil {
			t.Fatalf("returned %q, which url.Parse refuses: %v", u, err)
		}
		if p.Scheme != "http" && p.Scheme != "https" || p.Host == "" || p.User != nil {
			t.Fatalf("returned %q: scheme %q, host %q, user %v", u, p.Scheme, p.Host, p.User)
		}
		for form, i := strings.ToLower(u), 0; i < 2048; i++ {
			for _, s := range []string{key, account} {
				if s != "" && strings.Contains(form, strings.ToLower(s)) {
					t.Fatalf("returned %q, which holds the secret %q", u, s)
				}
			}
			next, err := url.PathUnescape(form)
			if err != nil || next == form {
				break
			}
			form = strings.ToLower(next)
		}
	})
}

// FuzzRedact checks that the Redactor's output never holds a credential,
// as it is or quoted, whatever the text and the credentials (overlapping
// each other or the marker included), and that a text holding none comes
// back unchanged.
func FuzzRedact(f *testing.F) {
	seeds := [][3]string{
		{`Get "http://127.0.0.1:1/integration/customer/c1/signup": net/http: HTTP/1.x transport connection broken: malformed MIME header: missing colon: "X-Bad ` + testKey + `"`, testKey, testAccount},
		{`net/http: HTTP/1.x transport connection broken: bad Content-Length "` + testAccount + `"`, testKey, testAccount},
		{`{"code": "400", "reason": "Key ` + testKey + ` is not valid for account ` + testAccount + `."}`, testKey, testAccount},
		{`missing colon: "X-Bad k\"3\\b"`, `k"3\b`, testAccount},
		{`{"reason":"k\u003c3\u0026"}`, "k<3&", ""},
		{"a]xx]xb", "]x", "y["},
		{"ay[y[[b", "y[", "]x"},
		{"<q>", "<[redacted]>", "q"},
		{"react [REDACTED]", "act", "ACT"},
		{"a[b]c", "[", "]"},
		{"aaaa", "aa", "aaa"},
		{"xabcdefx", "abcd", "cdef"},
		{"id 1779", "7", "1"},
		{"no credential here", testKey, testAccount},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, text, key, account string) {
		r := NewRedactor(fixed(key, account))
		out := r.Redact(text)
		var forms []string
		for _, v := range []string{key, account} {
			if v == "" {
				continue
			}
			forms = append(forms, v, unquote(strconv.Quote(v)), unquote(strconv.QuoteToASCII(v)))
			if js, err := json.Marshal(v); err == nil {
				forms = append(forms, unquote(string(js)))
			}
		}
		clean := true
		for _, s := range forms {
			if strings.Contains(out, s) {
				t.Fatalf("Redact(%q) = %q, which holds %q", text, out, s)
			}
			clean = clean && !strings.Contains(text, s)
		}
		if clean && out != text {
			t.Fatalf("Redact(%q) = %q; the text holds no credential", text, out)
		}
		if got := r.RedactError(errors.New(text)).Error(); got != out {
			t.Fatalf("RedactError text %q; Redact gives %q", got, out)
		}
	})
}

func unquote(quoted string) string { return quoted[1 : len(quoted)-1] }
