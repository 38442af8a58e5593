package proxy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bluetape/bluetape-gateway/proxy/callers"
	"github.com/bluetape/bluetape-gateway/proxy/ratelimit"
)

// errorBodyOf decodes a contract error body, failing the test when the
// body is not exactly {"code": "<status>", "reason": "..."}.
func errorBodyOf(t *testing.T, resp *http.Response, body string) (code, reason string) {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q; want application/json", ct)
	}
	var v map[string]string
	dec := json.NewDecoder(strings.NewReader(body))
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("error body %q is not a JSON object of strings: %v", body, err)
	}
	if len(v) != 2 || v["code"] == "" || v["reason"] == "" {
		t.Fatalf("error body %q; want exactly code and reason", body)
	}
	if want := resp.Status[:3]; v["code"] != want {
		t.Errorf("body code %q; want %q", v["code"], want)
	}
	return v["code"], v["reason"]
}

// TestContractTable walks the contract's API table, one row per case.
func TestContractTable(t *testing.T) {
	type want struct {
		status     int
		body       string // exact body, if set
		reason     string // substring of the error reason, if set
		retryAfter bool
		upstream   int64 // upstream calls expected
	}
	badID := want{status: 400, reason: "customer id"}
	cases := map[string]struct {
		upstream func(f *fakeUpstream)
		path     string
		want     want
	}{
		"found": {
			path: "/customers/abc-123/signup",
			want: want{status: 200, body: `{"signUpUrl":"https://www.bluetape.com/signup?id=abc-123"}`, upstream: 1},
		},
		"upstream 404": {
			upstream: func(f *fakeUpstream) { f.answer(404, notFoundBody) },
			path:     "/customers/nobody/signup",
			want:     want{status: 404, body: `{"code":"404","reason":"Customer not found."}`, upstream: 1},
		},
		"upstream 400 passes its reason on": {
			upstream: func(f *fakeUpstream) { f.answer(400, `{"code": "400", "reason": "Customer id is malformed."}`) },
			path:     "/customers/x/signup",
			want:     want{status: 400, reason: "Customer id is malformed.", upstream: 1},
		},
		"upstream 401 is a gateway failure": {
			upstream: func(f *fakeUpstream) { f.answer(401, `{"code": "401", "reason": "Unauthorized."}`) },
			path:     "/customers/x/signup",
			want:     want{status: 502, reason: "credentials", upstream: 1},
		},
		"upstream 403 is a gateway failure": {
			upstream: func(f *fakeUpstream) { f.answer(403, `{"code": "403", "reason": "Forbidden."}`) },
			path:     "/customers/x/signup",
			want:     want{status: 502, reason: "credentials", upstream: 1},
		},
		"upstream 500": {
			upstream: func(f *fakeUpstream) { f.answer(500, `{"code": "500", "reason": "Unexpected error."}`) },
			path:     "/customers/x/signup",
			want:     want{status: 502, upstream: 1},
		},
		"upstream unparsable body": {
			upstream: func(f *fakeUpstream) { f.answer(200, `<html>maintenance</html>`) },
			path:     "/customers/x/signup",
			want:     want{status: 502, upstream: 1},
		},
		"upstream 200 without a URL": {
			upstream: func(f *fakeUpstream) { f.answer(200, `{"signUpUrl": ""}`) },
			path:     "/customers/x/signup",
			want:     want{status: 502, upstream: 1},
		},
		"upstream 429": {
			upstream: func(f *fakeUpstream) {
				f.setHandler(func(w http.ResponseWriter, _ *http.Request) {
					w.Header().Set("Retry-After", "7")
					w.WriteHeader(429)
				})
			},
			path: "/customers/x/signup",
			want: want{status: 503, retryAfter: true, upstream: 1},
		},
		"id with a slash": {path: "/customers/a%2Fb/signup", want: badID},
		"id too long":     {path: "/customers/" + strings.Repeat("a", 129) + "/signup", want: badID},
		"id dot":          {path: "/customers/./signup", want: badID},
		"id dot dot":      {path: "/customers/%2E%2E/signup", want: badID},
		"id with a space": {path: "/customers/a%20b/signup", want: badID},
		"id with a NUL":   {path: "/customers/a%00b/signup", want: badID},
		"id not ASCII":    {path: "/customers/%C3%A4/signup", want: badID},
		"empty id":        {path: "/customers//signup", want: badID},
		"longest id": {
			path: "/customers/" + strings.Repeat("Az0._~-", 19)[:128] + "/signup",
			want: want{status: 200, upstream: 1},
		},
		"unknown route": {
			path: "/customers/abc",
			want: want{status: 404, reason: "No such route"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			tg := newTestGateway(t, nil)
			if tc.upstream != nil {
				tc.upstream(tg.Upstream)
			}
			resp, body := tg.get(t, tc.path)
			if resp.StatusCode != tc.want.status {
				t.Fatalf("status %d; want %d (body %s)", resp.StatusCode, tc.want.status, body)
			}
			if tc.want.body != "" && body != tc.want.body {
				t.Errorf("body %s; want %s", body, tc.want.body)
			}
			if resp.StatusCode != 200 {
				_, reason := errorBodyOf(t, resp, body)
				if !strings.Contains(reason, tc.want.reason) {
					t.Errorf("reason %q; want it to contain %q", reason, tc.want.reason)
				}
			}
			if ra := resp.Header.Get("Retry-After"); tc.want.retryAfter && ra == "" {
				t.Error("no Retry-After")
			}
			if got := tg.Upstream.calls.Load(); got != tc.want.upstream {
				t.Errorf("upstream calls %d; want %d", got, tc.want.upstream)
			}
			if resp.Header.Get("X-Request-Id") == "" {
				t.Error("no X-Request-Id on the answer")
			}
			if strings.Contains(body, testKey) || strings.Contains(body, testAccount) {
				t.Errorf("body %s holds a credential", body)
			}
		})
	}
}

func TestCacheHeaderMissThenHit(t *testing.T) {
	tg := newTestGateway(t, nil)
	for i, want := range []string{"MISS", "HIT", "HIT"} {
		resp, body := tg.get(t, "/customers/abc/signup")
		if resp.StatusCode != 200 || resp.Header.Get("X-Cache") != want {
			t.Fatalf("request %d: status %d, X-Cache %q; want 200, %s (%s)", i, resp.StatusCode, resp.Header.Get("X-Cache"), want, body)
		}
	}
	if got := tg.Upstream.calls.Load(); got != 1 {
		t.Errorf("upstream calls %d; want 1", got)
	}
}

func TestOtherMethodsAre405(t *testing.T) {
	tg := newTestGateway(t, nil)
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
		resp, body := tg.do(t, m, "/customers/abc/signup")
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s: status %d; want 405", m, resp.StatusCode)
			continue
		}
		errorBodyOf(t, resp, body)
	}
	if got := tg.Upstream.calls.Load(); got != 0 {
		t.Errorf("upstream calls %d; want 0", got)
	}
}

// TestUpstreamRequest checks what BlueTape receives: the configured
// credentials exactly once each, whatever the caller sent, on the right
// path, with nothing else of the caller's request.
func TestUpstreamRequest(t *testing.T) {
	tg := newTestGateway(t, nil)
	resp, body := tg.get(t, "/customers/Ab.9_~-z/signup?x=1",
		"X-BlueTape-Key", "callers-own-key",
		"X-Bluetape-Key", "another-one",
		"X-Integration-AccountId", "callers-own-account",
		"Authorization", "Bearer whatever",
		"Cookie", "session=1",
		"X-Request-Id", "req-42")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	calls := tg.Upstream.requests()
	if len(calls) != 1 {
		t.Fatalf("upstream got %d requests; want 1", len(calls))
	}
	c := calls[0]
	if got := c.Header.Values("X-BlueTape-Key"); len(got) != 1 || got[0] != testKey {
		t.Errorf("X-BlueTape-Key %q; want exactly [%s]", got, testKey)
	}
	if got := c.Header.Values("X-Integration-AccountId"); len(got) != 1 || got[0] != testAccount {
		t.Errorf("X-Integration-AccountId %q; want exactly [%s]", got, testAccount)
	}
	if c.Method != http.MethodGet || c.Path != "/genericBthubService/integration/customer/Ab.9_~-z/signup" || c.Query != "" {
		t.Errorf("upstream request %s %s?%s", c.Method, c.Path, c.Query)
	}
	if got := c.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type %q; want application/json", got)
	}
	for _, h := range []string{"Authorization", "Cookie"} {
		if v := c.Header.Values(h); len(v) > 0 {
			t.Errorf("caller's %s reached the upstream: %q", h, v)
		}
	}
	if got := c.Header.Get("X-Request-Id"); got != "req-42" {
		t.Errorf("upstream X-Request-Id %q; want the caller's req-42", got)
	}
	if got := resp.Header.Get("X-Request-Id"); got != "req-42" {
		t.Errorf("answer X-Request-Id %q; want req-42", got)
	}
}

func TestRequestIDReplacedWhenNotSane(t *testing.T) {
	tg := newTestGateway(t, nil)
	for _, bad := range []string{strings.Repeat("x", 200), "a b", "a\"b", "<script>"} {
		resp, _ := tg.get(t, "/customers/abc/signup", "X-Request-Id", bad)
		got := resp.Header.Get("X-Request-Id")
		if got == "" || got == bad || !saneRequestID(got) {
			t.Errorf("caller sent %q; answer carries %q, want a new sane id", bad, got)
		}
	}
}

// TestRedirectIsNeverFollowed makes the upstream redirect to another
// server, which must never receive a request, let alone the credentials.
func TestRedirectIsNeverFollowed(t *testing.T) {
	elsewhere := newFakeUpstream(t)
	for _, code := range []int{301, 302, 303, 307, 308} {
		tg := newTestGateway(t, nil)
		tg.Upstream.setHandler(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, elsewhere.URL+"/steal", code)
		})
		resp, body := tg.get(t, "/customers/abc/signup")
		if resp.StatusCode != http.StatusBadGateway {
			t.Errorf("redirect %d: status %d; want 502 (%s)", code, resp.StatusCode, body)
		}
	}
	if n := elsewhere.calls.Load(); n != 0 {
		t.Fatalf("the redirect target received %d requests", n)
	}
}

func TestUpstreamTimeoutIs504(t *testing.T) {
	release := make(chan struct{})
	tg := newTestGateway(t, func(o *testOptions) { o.Client.Timeout = 100 * time.Millisecond })
	t.Cleanup(func() { close(release) })
	tg.Upstream.setHandler(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	resp, body := tg.get(t, "/customers/slow/signup")
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("status %d; want 504 (%s)", resp.StatusCode, body)
	}
	errorBodyOf(t, resp, body)
}

func TestUpstreamRefusedIs502(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	tg := newTestGateway(t, func(o *testOptions) { o.Client.BaseURL.Host = addr })
	resp, body := tg.get(t, "/customers/abc/signup")
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d; want 502 (%s)", resp.StatusCode, body)
	}
	errorBodyOf(t, resp, body)
}

func TestUpstreamResetIs502(t *testing.T) {
	tg := newTestGateway(t, nil)
	tg.Upstream.setHandler(resetConnection)
	resp, body := tg.get(t, "/customers/abc/signup")
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d; want 502 (%s)", resp.StatusCode, body)
	}
}

func TestCallerOverRateIs429(t *testing.T) {
	tg := newTestGateway(t, func(o *testOptions) { o.RateLimit = ratelimit.Policy{Rate: 1, Burst: 2} })
	for i := 0; i < 2; i++ {
		if resp, body := tg.get(t, "/customers/abc/signup"); resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d (%s)", i, resp.StatusCode, body)
		}
	}
	resp, body := tg.get(t, "/customers/abc/signup")
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("status %d; want 429 (%s)", resp.StatusCode, body)
	}
	errorBodyOf(t, resp, body)
	if ra := resp.Header.Get("Retry-After"); ra != "1" {
		t.Errorf("Retry-After %q; want 1", ra)
	}
}

func TestMissingTokenIs401(t *testing.T) {
	sum := sha256.Sum256([]byte("good-token"))
	reg, err := callers.Parse([]byte("callers:\n  - name: billing\n    token_sha256: " + hex.EncodeToString(sum[:]) + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	tg := newTestGateway(t, func(o *testOptions) { o.Callers = func() *callers.Registry { return reg } })
	for name, auth := range map[string]string{"missing": "", "unknown": "Bearer bad-token", "basic": "Basic Zm9vOmJhcg=="} {
		resp, body := tg.get(t, "/customers/abc/signup", "Authorization", auth)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: status %d; want 401", name, resp.StatusCode)
			continue
		}
		errorBodyOf(t, resp, body)
		if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: WWW-Authenticate %q", name, resp.Header.Get("WWW-Authenticate"))
		}
	}
	if resp, body := tg.get(t, "/customers/abc/signup", "Authorization", "Bearer good-token"); resp.StatusCode != 200 {
		t.Errorf("good token: status %d (%s)", resp.StatusCode, body)
	}
	if got := tg.Upstream.calls.Load(); got != 1 {
		t.Errorf("upstream calls %d; want 1", got)
	}
}

func TestErrorBodyEscapes(t *testing.T) {
	got := string(errorBody(400, "a \"quoted\" <b>\n"))
	var v map[string]string
	if err := json.Unmarshal([]byte(got), &v); err != nil || v["reason"] != "a \"quoted\" <b>\n" || v["code"] != "400" {
		t.Fatalf("errorBody = %s (%v)", got, err)
	}
}

var _ = httptest.NewRecorder
