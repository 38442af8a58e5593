package bluetape

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// idRule is the contract's id rule: the ids the gateway sends.
var idRule = regexp.MustCompile(`^[A-Za-z0-9._~-]{1,128}$`)

// fuzzBases are base URLs of the shapes config.Load accepts: http or
// https, a host with or without a port, a path or none, no trailing
// slash, query or fragment.
var fuzzBases = []string{
	"https://api.bluetape.com/genericBthubService",
	"http://127.0.0.1:8081/genericBthubService",
	"https://api.bluetape.com",
	"http://[::1]:9000/a/b%20c/d",
}

// FuzzSignupURL checks that the upstream URL built for any id, valid or
// not, keeps the base's host, adds exactly one escaped path segment for
// the id, and has no query or fragment.
func FuzzSignupURL(f *testing.F) {
	for _, id := range []string{
		"abc-123", "97bee7a043b58084", ".", "..", "...", "a/b", "../admin", "a?x=1", "a#frag",
		"%2e%2e", "a%2Fb", "", " ", "a b", "\x00", "ä", "~user", strings.Repeat("x", 128),
		strings.Repeat("x", 129), "a;b", "a\r\nX-Bluetape-Key: x", "//evil.example/", "@evil", ":8080",
	} {
		f.Add(id, uint8(0))
	}
	f.Fuzz(func(t *testing.T, id string, baseIndex uint8) {
		want := idRule.MatchString(id) && id != "." && id != ".."
		base, err := url.Parse(fuzzBases[int(baseIndex)%len(fuzzBases)])
		if err != nil {
			t.Fatal(err)
		}
		base.RawPath = "" // as config.Load leaves it
		u := signupURL(base, id)
		checkUpstreamURL(t, base, id, u)
		// What goes on the wire, parsed back, is the same request.
		back, err := url.Parse(u.String())
		if err != nil {
			t.Fatalf("built URL %q does not parse: %v", u, err)
		}
		checkUpstreamURL(t, base, id, back)
		if want {
			if seg := url.PathEscape(id); seg != id {
				t.Fatalf("valid id %q needs escaping (%q)", id, seg)
			}
			// A valid id is one plain segment: a resolver that cleans the
			// path (proxies, servers) cannot move the request elsewhere.
			if rel, err := url.Parse(back.EscapedPath()); err != nil || base.ResolveReference(rel).EscapedPath() != back.EscapedPath() {
				t.Fatalf("path %q changes when resolved", back.EscapedPath())
			}
		}
	})
}

func checkUpstreamURL(t *testing.T, base *url.URL, id string, u *url.URL) {
	t.Helper()
	prefix := base.EscapedPath() + "/integration/customer/"
	const suffix = "/signup"
	p := u.EscapedPath()
	if !strings.HasPrefix(p, prefix) || !strings.HasSuffix(p, suffix) || len(p) < len(prefix)+len(suffix) {
		t.Fatalf("path %q; want %s<id>%s", p, prefix, suffix)
	}
	seg := p[len(prefix) : len(p)-len(suffix)]
	if strings.ContainsAny(seg, "/?#") {
		t.Fatalf("id %q became more than one segment: %q", id, seg)
	}
	if got, err := url.PathUnescape(seg); err != nil || got != id {
		t.Fatalf("segment %q unescapes to %q (%v); want the id %q", seg, got, err, id)
	}
	if u.Scheme != base.Scheme || u.Host != base.Host || u.User != nil {
		t.Fatalf("built URL %q; want scheme %s, host %s, no user", u, base.Scheme, base.Host)
	}
	if u.RawQuery != base.RawQuery || u.ForceQuery || u.Fragment != base.Fragment || u.Opaque != "" {
		t.Fatalf("built URL %q has a query, fragment or opaque part", u)
	}
}

// FuzzEncodeSignup checks the reading of an upstream 200 body: it never
// panics, and what it accepts becomes exactly {"signUpUrl": "<URL>"}
// with the upstream's absolute http(s) URL.
func FuzzEncodeSignup(f *testing.F) {
	for _, body := range []string{
		`{"signUpUrl": "https://www.bluetape.com/signup?id=97bee7a043b58084"}`,
		`{"signUpUrl": "http://x/y", "extra": 1}`,
		`{"signUpUrl": "javascript:alert(1)"}`,
		`{"signUpUrl": "//no-scheme/x"}`,
		`{"signUpUrl": "https://a/</script><script>"}`,
		`{"signUpUrl": "https://a/\u2028\u0000"}`,
		`{"signUpUrl": null}`, `{"signUpUrl": 5}`, `{"SIGNUPURL": "https://a/"}`,
		`{"signUpUrl": "https://a/", "signUpUrl": "https://b/"}`,
		`null`, `[]`, `"x"`, ``, `{`, `<html>maintenance</html>`, "{\"signUpUrl\": \"https://a/\xff\"}",
	} {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		out, err := encodeSignup(body, testKey, testAccount)
		if err != nil {
			if out != nil {
				t.Fatalf("error %v with output %q", err, out)
			}
			return
		}
		if !json.Valid(out) || !utf8.Valid(out) {
			t.Fatalf("output %q is not valid JSON", out)
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(out, &fields); err != nil || len(fields) != 1 || fields["signUpUrl"] == nil {
			t.Fatalf("output %q; want exactly one field, signUpUrl", out)
		}
		var got string
		if err := json.Unmarshal(fields["signUpUrl"], &got); err != nil {
			t.Fatalf("signUpUrl in %q is not a string", out)
		}
		u, err := url.Parse(got)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			t.Fatalf("signUpUrl %q is not an absolute http(s) URL", got)
		}
		var in struct {
			SignUpURL string `json:"signUpUrl"`
		}
		if err := json.Unmarshal(body, &in); err != nil || in.SignUpURL != got {
			t.Fatalf("signUpUrl %q; the upstream sent %q", got, in.SignUpURL)
		}
		if low := strings.ToLower(string(out)); strings.Contains(low, strings.ToLower(testKey)) || strings.Contains(low, strings.ToLower(testAccount)) {
			t.Fatalf("output %q holds a credential", out)
		}
		// Nothing in it can end a <script> block where a caller embeds it.
		if bytes.ContainsAny(out, "<>&") {
			t.Fatalf("output %q carries unescaped HTML characters", out)
		}
	})
}

// FuzzRead checks the whole reading of an upstream answer, any
// status and body: it never panics, an answer passed on is one the
// contract names, and an error is a 502/503/504 whose body is the
// contract's error body.
func FuzzRead(f *testing.F) {
	for _, c := range []struct {
		status int
		body   string
	}{
		{200, `{"signUpUrl": "https://www.bluetape.com/signup?id=1"}`},
		{400, `{"code": "400", "reason": "Invalid request."}`},
		{400, "{\"reason\": \"line\\nbreak \\u0000 and \\u202e\"}"},
		{400, `{"reason": "bad key ` + testKey + ` for account ` + testAccount + `"}`},
		{200, `{"signUpUrl": "https://www.bluetape.com/signup?k=` + testKey + `"}`},
		{404, `{"code": "404", "reason": "Customer not found."}`},
		{401, ``}, {429, ``}, {500, `x`}, {302, ``}, {418, `{}`}, {599, ``}, {100, ``},
	} {
		f.Add(c.status, []byte(c.body), "")
	}
	f.Add(429, []byte(``), "Wed, 21 Oct 2015 07:28:00 GMT")
	f.Add(503, []byte(``), "-5")
	f.Fuzz(func(t *testing.T, status int, body []byte, retryAfter string) {
		if status < 100 || status > 999 {
			return
		}
		resp := &http.Response{StatusCode: status, Header: http.Header{}}
		resp.Header.Set("Retry-After", retryAfter)
		c := &Client{now: time.Now, redactor: NewRedactor(fixed(testKey, testAccount))}
		out, err := c.read(resp, body, testKey, testAccount)
		if err == nil {
			if status != 200 || !json.Valid(out) {
				t.Fatalf("200 with body %q from upstream %d", out, status)
			}
			return
		}
		e, ok := err.(*Error)
		if !ok {
			t.Fatalf("error %T; want *Error", err)
		}
		if e.Outcome != strconv.Itoa(status) {
			t.Fatalf("outcome %q for upstream %d", e.Outcome, status)
		}
		switch {
		case e.Status == 404 && status == 404, e.Status == 400 && status == 400:
		case e.Status == 502, e.Status == 503, e.Status == 504:
		default:
			t.Fatalf("status %d for upstream %d; want 502, 503 or 504 (or 400/404 passed on)", e.Status, status)
		}
		if e.Status == 503 && (e.RetryAfter < time.Second || e.RetryAfter > 5*time.Minute) {
			t.Fatalf("Retry-After %v; want 1s to 5m", e.RetryAfter)
		}
		r := e.Reason
		if r == "" || len(r) > 200 || !utf8.ValidString(r) || strings.IndexFunc(r, func(c rune) bool { return !unicode.IsPrint(c) }) >= 0 {
			t.Fatalf("reason %q; want 1 to 200 bytes of printable text", r)
		}
		if strings.Contains(r, testKey) || strings.Contains(r, testAccount) {
			t.Fatalf("reason %q holds a credential", r)
		}
	})
}
