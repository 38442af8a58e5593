package proxy

import (
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sony/gobreaker/v2"

	"github.com/bluetape/bluetape-gateway/proxy/bluetape"
	"github.com/bluetape/bluetape-gateway/proxy/bluetape/bluetapetest"
)

// rotatingCredentials are credentials a test can rotate while the
// gateway runs, as a reloaded secret file does.
type rotatingCredentials struct{ key, account atomic.Pointer[string] }

func newRotatingCredentials(key, account string) *rotatingCredentials {
	r := &rotatingCredentials{}
	r.rotate(key, account)
	return r
}

func (r *rotatingCredentials) rotate(key, account string) {
	r.key.Store(&key)
	r.account.Store(&account)
}

func (r *rotatingCredentials) get() (string, string) { return *r.key.Load(), *r.account.Load() }

// assertNoCredential fails if any of values appears in the answer or in
// anything the gateway logged.
func assertNoCredential(t *testing.T, tg *testGateway, resp *http.Response, body string, values ...string) {
	t.Helper()
	logs := tg.Logs.String()
	for _, v := range values {
		if strings.Contains(body, v) {
			t.Errorf("the answer shows a credential: %s", body)
		}
		for k, h := range resp.Header {
			if strings.Contains(strings.Join(h, " "), v) {
				t.Errorf("the answer's %s header shows a credential", k)
			}
		}
		if strings.Contains(logs, v) {
			t.Errorf("the logs show a credential:\n%s", logs)
		}
	}
}

// TestTransportErrorsAreRedacted sends the gateway to an upstream whose
// malformed answers make Go's transport quote the credentials in its
// errors: neither the answer nor the access log line shows them.
func TestTransportErrorsAreRedacted(t *testing.T) {
	cases := map[string]struct{ answer, quoted string }{
		"header line without a colon": {bluetapetest.HeaderLineAnswer("X-Bad " + testKey), "malformed MIME header"},
		"bad Content-Length":          {bluetapetest.ContentLengthAnswer(testAccount), "bad Content-Length"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			raw := bluetapetest.NewRawUpstream(t, tc.answer)
			tg := newTestGateway(t, func(o *testOptions) {
				u, err := url.Parse(raw.URL)
				if err != nil {
					t.Fatal(err)
				}
				o.Client.BaseURL = u
			})
			resp, body := tg.get(t, "/customers/c1/signup")
			if resp.StatusCode != http.StatusBadGateway {
				t.Fatalf("status %d; want 502 (%s)", resp.StatusCode, body)
			}
			if raw.Requests() == 0 {
				t.Fatal("the upstream read no request")
			}
			lines := tg.Logs.Records("request")
			if len(lines) != 1 {
				t.Fatalf("%d access log lines; want 1", len(lines))
			}
			errText, _ := lines[0]["error"].(string)
			// The error is logged, with the marker where the credential stood.
			if !strings.Contains(errText, tc.quoted) || !strings.Contains(errText, bluetape.Redacted) {
				t.Errorf("access log error %q; want the transport's error with %s", errText, bluetape.Redacted)
			}
			assertNoCredential(t, tg, resp, body, testKey, testAccount)
		})
	}
}

// TestUpstreamReasonIsRedacted checks that an upstream 400 whose reason
// quotes the credentials is passed on without them, also after a
// rotation, and also when the reason is long enough to be cut.
func TestUpstreamReasonIsRedacted(t *testing.T) {
	creds := newRotatingCredentials(testKey, testAccount)
	tg := newTestGateway(t, func(o *testOptions) { o.Client.Credentials = creds.get })
	check := func(key, account, padding string) {
		t.Helper()
		tg.Upstream.answer(400, `{"code":"400","reason":"`+padding+`key `+key+` is not allowed for account `+account+`"}`)
		resp, body := tg.get(t, "/customers/c1/signup")
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %d; want 400 (%s)", resp.StatusCode, body)
		}
		_, reason := errorBodyOf(t, resp, body)
		if padding == "" && reason != "key [redacted] is not allowed for account [redacted]" {
			t.Errorf("reason %q; want both credentials redacted", reason)
		}
		assertNoCredential(t, tg, resp, body, key, account)
		// Not even the start of a credential cut at 200 characters.
		if strings.Contains(body, key[:8]) || strings.Contains(body, account[:8]) {
			t.Errorf("the answer shows part of a credential: %s", body)
		}
	}
	check(testKey, testAccount, "")
	// The credential straddles the 200-character cut.
	check(testKey, testAccount, strings.Repeat("x", 180))

	const newKey, newAccount = "rotated-key-0b9c8d7e6f5a4b3c2d1e", "rotated-account-7a6b5c4d3e"
	creds.rotate(newKey, newAccount)
	check(newKey, newAccount, "")
}

// TestSignupURLHoldingACredentialIs502 checks that an upstream 200 whose
// URL holds a credential is a 502, and is not cached: the next request
// asks the upstream again.
func TestSignupURLHoldingACredentialIs502(t *testing.T) {
	creds := newRotatingCredentials(testKey, testAccount)
	tg := newTestGateway(t, func(o *testOptions) {
		o.Client.Credentials = creds.get
		// Each refused answer counts against the breaker; this test
		// sends more of them than it lets through by default.
		o.Client.Breaker.Trip = func(gobreaker.Counts) bool { return false }
	})
	for i, u := range []string{
		"https://www.bluetape.com/signup?k=" + testKey,
		"https://www.bluetape.com/signup?a=" + url.QueryEscape(strings.ToUpper(testAccount)),
	} {
		tg.Upstream.answer(200, `{"signUpUrl": "`+u+`"}`)
		for range 2 {
			resp, body := tg.get(t, "/customers/c1/signup")
			if resp.StatusCode != http.StatusBadGateway {
				t.Fatalf("URL %d: status %d; want 502 (%s)", i, resp.StatusCode, body)
			}
			assertNoCredential(t, tg, resp, body, testKey, testAccount)
		}
	}
	if got := tg.Upstream.calls.Load(); got != 4 {
		t.Errorf("upstream calls %d; want 4: a refused answer is not cached", got)
	}
	if tg.Cache.Len() != 0 {
		t.Errorf("cache holds %d entries; want none", tg.Cache.Len())
	}

	// After a rotation, the new key is refused and the old one no longer is.
	const newKey = "rotated-key-0b9c8d7e6f5a4b3c2d1e"
	creds.rotate(newKey, testAccount)
	tg.Upstream.answer(200, `{"signUpUrl": "https://www.bluetape.com/signup?k=`+newKey+`"}`)
	if resp, body := tg.get(t, "/customers/c2/signup"); resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("rotated key in the URL: status %d; want 502 (%s)", resp.StatusCode, body)
	}
	tg.Upstream.answer(200, `{"signUpUrl": "https://www.bluetape.com/signup?k=`+testKey+`"}`)
	if resp, body := tg.get(t, "/customers/c3/signup"); resp.StatusCode != http.StatusOK || body != `{"signUpUrl":"https://www.bluetape.com/signup?k=`+testKey+`"}` {
		t.Fatalf("rotated-out key in the URL: status %d, body %s; want 200 with the gateway's encoding", resp.StatusCode, body)
	}
}
