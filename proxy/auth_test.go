package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluetape/bluetape-gateway/config"
	"github.com/bluetape/bluetape-gateway/metrics"
	"github.com/bluetape/bluetape-gateway/proxy/callers"
	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
	"github.com/bluetape/bluetape-gateway/proxy/ratelimit"
)

// authCaller is one entry of a callers file written by a test.
type authCaller struct {
	name, token string
	extra       string // more YAML keys, e.g. "rate: 1"
}

// authCallersYAML renders a callers file listing cs.
func authCallersYAML(cs ...authCaller) string {
	var b strings.Builder
	b.WriteString("callers:\n")
	for _, c := range cs {
		sum := sha256.Sum256([]byte(c.token))
		fmt.Fprintf(&b, "  - name: %s\n    token_sha256: %s\n", c.name, hex.EncodeToString(sum[:]))
		for _, kv := range strings.Split(c.extra, ";") {
			if kv = strings.TrimSpace(kv); kv != "" {
				fmt.Fprintf(&b, "    %s\n", kv)
			}
		}
	}
	return b.String()
}

func authRegistry(t *testing.T, cs ...authCaller) *callers.Registry {
	t.Helper()
	r, err := callers.Parse([]byte(authCallersYAML(cs...)))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// authBody decodes an error body and checks its form.
func authBody(t *testing.T, resp *http.Response, body string) (code, reason string) {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q; want application/json", ct)
	}
	var e struct{ Code, Reason string }
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Reason == "" {
		t.Errorf("error body %q: want {\"code\", \"reason\"} (%v)", body, err)
	}
	if e.Code != fmt.Sprint(resp.StatusCode) {
		t.Errorf("body code %q; status %d", e.Code, resp.StatusCode)
	}
	return e.Code, e.Reason
}

// TestAuthentication covers every way a request can present, or fail to
// present, a bearer token.
func TestAuthentication(t *testing.T) {
	reg := authRegistry(t, authCaller{name: "billing", token: "billing-token-1"})
	tg := newTestGateway(t, func(o *testOptions) {
		o.Callers = func() *callers.Registry { return reg }
		o.RateLimit = ratelimit.Policy{Rate: 50, Burst: 100}
	})
	cases := []struct {
		name   string
		header []string
		want   int
	}{
		{"missing header", nil, 401},
		{"wrong scheme", []string{"Authorization", "Basic YmlsbGluZzpiaWxsaW5nLXRva2VuLTE="}, 401},
		{"scheme without token", []string{"Authorization", "Bearer"}, 401},
		{"empty token", []string{"Authorization", "Bearer    "}, 401},
		{"malformed token", []string{"Authorization", "Bearer billing token 1"}, 401},
		{"token with a quote", []string{"Authorization", `Bearer "billing-token-1"`}, 401},
		{"unknown token", gatewaytest.Bearer("billing-token-2"), 401},
		{"the hash as a token", gatewaytest.Bearer(func() string {
			s := sha256.Sum256([]byte("billing-token-1"))
			return hex.EncodeToString(s[:])
		}()), 401},
		{"valid token", gatewaytest.Bearer("billing-token-1"), 200},
		{"valid token, lower-case scheme", []string{"Authorization", "bearer billing-token-1"}, 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			calls := tg.Upstream.calls.Load()
			resp, body := tg.get(t, "/customers/abc/signup", tc.header...)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d; want %d (%s)", resp.StatusCode, tc.want, body)
			}
			if tc.want == 200 {
				if resp.Header.Get("RateLimit") == "" {
					t.Error("no RateLimit header on an authenticated answer")
				}
				return
			}
			authBody(t, resp, body)
			if got := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
				t.Errorf("WWW-Authenticate %q; want a Bearer challenge", got)
			}
			if got := resp.Header.Get("RateLimit"); got != "" {
				t.Errorf("RateLimit %q on a 401; an unauthenticated request has no quota", got)
			}
			if strings.Contains(body, "billing-token") {
				t.Errorf("the body echoes the token: %s", body)
			}
			if tg.Upstream.calls.Load() != calls {
				t.Error("the upstream was called for an unauthenticated request")
			}
		})
	}
	if strings.Contains(tg.Logs.String(), "billing-token") {
		t.Error("a token appears in the log")
	}
}

// authPoll repeats a request until it answers want, for at most 10s.
func authPoll(t *testing.T, url string, want int, header ...string) {
	t.Helper()
	gatewaytest.WaitFor(t, 10*time.Second, fmt.Sprintf("GET %s to answer %d", url, want), func() bool {
		status, err := getStatus(url, header...)
		return err == nil && status == want
	})
}

// authAtLeast waits, for at most 10s, until n reaches want.
func authAtLeast(t *testing.T, n *atomic.Int64, want int64) {
	t.Helper()
	gatewaytest.WaitFor(t, 10*time.Second, fmt.Sprintf("the count to reach %d", want), func() bool { return n.Load() >= want })
}

// TestCallersReloadUnderLoad swaps the callers file through ..data while
// requests flow from several goroutines with a token valid before and
// after: none fails. The new caller's token works once the registry is
// reloaded, and the removed caller's token no longer does.
func TestCallersReloadUnderLoad(t *testing.T) {
	v1 := authCallersYAML(
		authCaller{name: "billing", token: "billing-token"},
		authCaller{name: "reports", token: "reports-token"},
	)
	v2 := authCallersYAML(
		authCaller{name: "billing", token: "billing-token"},
		authCaller{name: "onboarding", token: "onboarding-token"},
	)
	m := gatewaytest.NewSecretVolume(t, map[string]string{"callers.yaml": v1})
	w, err := config.NewWatched(m.Path("callers.yaml"), callers.Parse)
	if err != nil {
		t.Fatal(err)
	}
	tg := newTestGateway(t, func(o *testOptions) { o.Callers = w.Get })

	var reloadErrs atomic.Int64
	// poll reloads the file, as main does every second.
	poll := func() {
		w.Poll(func(_ bool, err error) {
			if err != nil {
				reloadErrs.Add(1)
			}
		})
	}

	url := tg.URL + "/customers/abc/signup"
	if status, err := getStatus(url, gatewaytest.Bearer("reports-token")...); err != nil || status != 200 {
		t.Fatalf("reports before the swap: %d %v; want 200", status, err)
	}
	var sent, failed atomic.Int64
	halt := gatewaytest.Hammer(4, func(g int) bool {
		status, err := getStatus(fmt.Sprintf("%s/customers/id-%d/signup", tg.URL, g), gatewaytest.Bearer("billing-token")...)
		sent.Add(1)
		if err != nil || status != 200 {
			if failed.Add(1) == 1 {
				t.Errorf("request during reload: status %d, error %v", status, err)
			}
		}
		return true
	})
	t.Cleanup(halt)
	// Let requests flow before and after the swap.
	authAtLeast(t, &sent, 50)
	m.Update(map[string]string{"callers.yaml": v2})
	poll()
	authPoll(t, url, 200, gatewaytest.Bearer("onboarding-token")...)
	authAtLeast(t, &sent, sent.Load()+50)
	halt()

	if n := failed.Load(); n > 0 {
		t.Errorf("%d of %d requests failed during the reload", n, sent.Load())
	}
	resp, body := tg.get(t, "/customers/abc/signup", gatewaytest.Bearer("reports-token")...)
	if resp.StatusCode != 401 {
		t.Errorf("removed caller: status %d; want 401 (%s)", resp.StatusCode, body)
	}
	if n := reloadErrs.Load(); n != 0 {
		t.Errorf("%d reload errors; want none", n)
	}

	// A broken file is reported, and the registry in force stays.
	m.Update(map[string]string{"callers.yaml": "callers:\n  - name: [broken\n"})
	if poll(); reloadErrs.Load() != 1 {
		t.Fatalf("the broken file was reported %d times; want once", reloadErrs.Load())
	}
	if status, err := getStatus(url, gatewaytest.Bearer("onboarding-token")...); err != nil || status != 200 {
		t.Fatalf("onboarding while the file is broken: %d %v; want 200", status, err)
	}
	for _, tok := range []string{"billing-token", "onboarding-token"} {
		if resp, body := tg.get(t, "/customers/abc/signup", gatewaytest.Bearer(tok)...); resp.StatusCode != 200 {
			t.Errorf("%s after a bad reload: status %d; want 200 (%s)", tok, resp.StatusCode, body)
		}
	}
}

// TestCallersBadReloadKeepsRegistry drives Reload directly.
func TestCallersBadReloadKeepsRegistry(t *testing.T) {
	m := gatewaytest.NewSecretVolume(t, map[string]string{"callers.yaml": authCallersYAML(authCaller{name: "billing", token: "billing-token"})})
	w, err := config.NewWatched(m.Path("callers.yaml"), callers.Parse)
	if err != nil {
		t.Fatal(err)
	}
	tg := newTestGateway(t, func(o *testOptions) { o.Callers = w.Get })
	for name, content := range map[string]string{
		"not YAML":        "callers: [",
		"no callers":      "callers: []\n",
		"malformed hash":  "callers:\n  - name: billing\n    token_sha256: abc\n",
		"empty file":      "",
		"duplicate names": authCallersYAML(authCaller{name: "billing", token: "a"}, authCaller{name: "billing", token: "b"}),
	} {
		m.Update(map[string]string{"callers.yaml": content})
		if changed, err := w.Reload(); changed || err == nil {
			t.Errorf("%s: Reload = %v, %v; want an error", name, changed, err)
		}
		if resp, body := tg.get(t, "/customers/abc/signup", gatewaytest.Bearer("billing-token")...); resp.StatusCode != 200 {
			t.Errorf("%s: status %d; want 200 from the last good registry (%s)", name, resp.StatusCode, body)
		}
	}
}

// TestPerCallerOverrides checks that a caller's rate and burst replace the
// defaults, each on its own, and that a rate of 0 exempts the caller.
func TestPerCallerOverrides(t *testing.T) {
	reg := authRegistry(t,
		authCaller{name: "default", token: "t-default"},
		authCaller{name: "slow", token: "t-slow", extra: "rate: 0.2; burst: 1"},
		authCaller{name: "bursty", token: "t-bursty", extra: "burst: 3"},
		authCaller{name: "trickle", token: "t-trickle", extra: "rate: 0.5"},
		authCaller{name: "exempt", token: "t-exempt", extra: "rate: 0"},
	)
	tg := newTestGateway(t, func(o *testOptions) {
		o.Callers = func() *callers.Registry { return reg }
		o.RateLimit = ratelimit.Policy{Rate: 10, Burst: 5}
	})
	cases := []struct {
		token    string
		admitted int    // requests admitted at one instant
		policy   string // RateLimit-Policy, "" for none
	}{
		{"t-default", 5, `"caller";q=10;w=1`},
		{"t-slow", 1, `"caller";q=1;w=5`},
		{"t-bursty", 3, `"caller";q=10;w=1`},
		{"t-trickle", 5, `"caller";q=5;w=10`},
		{"t-exempt", 50, ""},
	}
	for _, tc := range cases {
		t.Run(tc.token, func(t *testing.T) {
			for i := 0; i < tc.admitted; i++ {
				resp, body := tg.get(t, "/customers/abc/signup", gatewaytest.Bearer(tc.token)...)
				if resp.StatusCode != 200 {
					t.Fatalf("request %d: status %d; want 200 (%s)", i+1, resp.StatusCode, body)
				}
				if got := resp.Header.Get("RateLimit-Policy"); got != tc.policy {
					t.Fatalf("RateLimit-Policy %q; want %q", got, tc.policy)
				}
			}
			if tc.policy == "" {
				return
			}
			resp, body := tg.get(t, "/customers/abc/signup", gatewaytest.Bearer(tc.token)...)
			if resp.StatusCode != 429 {
				t.Fatalf("request %d: status %d; want 429 (%s)", tc.admitted+1, resp.StatusCode, body)
			}
		})
	}
	if got := rateLimitedLabels(t, tg); fmt.Sprint(got) != "map[bursty:1 default:1 slow:1 trickle:1]" {
		t.Errorf("rate_limited_total by caller: %v", got)
	}
}

// TestRetryAfterFromBucket refuses at 0.2 requests per second: Retry-After
// and the RateLimit fields follow the bucket, not a constant.
func TestRetryAfterFromBucket(t *testing.T) {
	tg := newTestGateway(t, func(o *testOptions) { o.RateLimit = ratelimit.Policy{Rate: 0.2, Burst: 1} })
	type want struct {
		status                int
		retryAfter, rateLimit string
	}
	steps := []struct {
		advance time.Duration
		want    want
	}{
		{0, want{200, "", `"caller";r=0;t=5`}},
		{0, want{429, "5", `"caller";r=0;t=5`}},
		{2 * time.Second, want{429, "3", `"caller";r=0;t=3`}},
		{2500 * time.Millisecond, want{429, "1", `"caller";r=0;t=1`}},
		{500 * time.Millisecond, want{200, "", `"caller";r=0;t=5`}},
	}
	for i, s := range steps {
		tg.Clock.Advance(s.advance)
		resp, body := tg.get(t, "/customers/abc/signup")
		got := want{resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("RateLimit")}
		if got != s.want {
			t.Errorf("step %d: got %+v; want %+v (%s)", i, got, s.want, body)
		}
		if p := resp.Header.Get("RateLimit-Policy"); p != `"caller";q=1;w=5` {
			t.Errorf("step %d: RateLimit-Policy %q", i, p)
		}
		if resp.StatusCode == 429 {
			if code, _ := authBody(t, resp, body); code != "429" {
				t.Errorf("step %d: body code %q", i, code)
			}
		}
	}
}

// TestRateLimitHeaders checks the fields of draft-ietf-httpapi-ratelimit-
// headers on successful answers at the default policy.
func TestRateLimitHeaders(t *testing.T) {
	tg := newTestGateway(t, func(o *testOptions) { o.RateLimit = ratelimit.Policy{Rate: 50, Burst: 100} })
	for i := 1; i <= 3; i++ {
		resp, body := tg.get(t, "/customers/abc/signup")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d (%s)", resp.StatusCode, body)
		}
		if got, want := resp.Header.Get("RateLimit-Policy"), `"caller";q=100;w=2`; got != want {
			t.Errorf("RateLimit-Policy %q; want %q", got, want)
		}
		if got, want := resp.Header.Get("RateLimit"), fmt.Sprintf(`"caller";r=%d;t=1`, 100-i); got != want {
			t.Errorf("RateLimit %q; want %q", got, want)
		}
	}
}

func TestPolicyHeader(t *testing.T) {
	cases := map[ratelimit.Policy]string{
		{Rate: 50, Burst: 100}:  `"caller";q=100;w=2`,
		{Rate: 0.2, Burst: 1}:   `"caller";q=1;w=5`,
		{Rate: 30, Burst: 100}:  `"caller";q=120;w=4`,
		{Rate: 1000, Burst: 1}:  `"caller";q=1000;w=1`,
		{Rate: 0.3, Burst: 1}:   `"caller";q=1;w=4`,
		{Rate: 10, Burst: 5}:    `"caller";q=10;w=1`,
		{Rate: 2.5, Burst: 100}: `"caller";q=100;w=40`,
	}
	for p, want := range cases {
		if got := policyHeader(p); got != want {
			t.Errorf("%+v: %s; want %s", p, got, want)
		}
	}
}

func TestLimitValue(t *testing.T) {
	cases := []struct {
		d    ratelimit.Decision
		want string
	}{
		{ratelimit.Decision{Allowed: true, Remaining: 99, Reset: 20 * time.Millisecond}, `"caller";r=99;t=1`},
		{ratelimit.Decision{Allowed: true, Remaining: 100}, `"caller";r=100;t=0`},
		{ratelimit.Decision{Allowed: false, Remaining: 0, RetryAfter: 2500 * time.Millisecond, Reset: time.Hour}, `"caller";r=0;t=3`},
		{ratelimit.Decision{Allowed: true, Remaining: 5000, Reset: 90 * time.Second}, `"caller";r=5000;t=90`},
		{ratelimit.Decision{Allowed: true, Remaining: 3, Reset: 40 * time.Second}, `"caller";r=3;t=40`},
	}
	for _, tc := range cases {
		for range 2 { // made, then shared
			v := limitValue(tc.d)
			if len(v) != 1 || v[0] != tc.want {
				t.Errorf("%+v: %q; want [%s]", tc.d, v, tc.want)
			}
		}
	}
	a, b := limitValue(cases[0].d), limitValue(cases[0].d)
	if &a[0] != &b[0] {
		t.Error("a small value is made anew; want it shared")
	}
}

// authOpenGateway is an open gateway allowing one request per address
// at a time, behind the given trusted proxies.
func authOpenGateway(t *testing.T, trusted ...string) *testGateway {
	t.Helper()
	var nets []*net.IPNet
	for _, s := range trusted {
		_, n, err := net.ParseCIDR(s)
		if err != nil {
			t.Fatal(err)
		}
		nets = append(nets, n)
	}
	return newTestGateway(t, func(o *testOptions) {
		o.TrustedProxies = nets
		o.RateLimit = ratelimit.Policy{Rate: 0.001, Burst: 1}
	})
}

func xff(v string) []string { return []string{"X-Forwarded-For", v} }

// TestForwardedForFromTrustedProxy: the test client's peer is 127.0.0.1;
// trusted, its X-Forwarded-For names the caller, so each address has its
// own bucket.
func TestForwardedForFromTrustedProxy(t *testing.T) {
	tg := authOpenGateway(t, "127.0.0.1/32")
	steps := []struct {
		xff  string
		want int
	}{
		{"203.0.113.1", 200},
		{"203.0.113.1", 429},
		{"203.0.113.2", 200},
		// A client's own X-Forwarded-For is only believed up to the last
		// untrusted hop: the proxy appended 203.0.113.2, the caller.
		{"198.51.100.9, 203.0.113.2", 429},
		{"192.0.2.77, 203.0.113.3", 200},
		{"192.0.2.78, 203.0.113.3", 429},
		// Spelled differently, the same address is the same caller.
		{"::ffff:203.0.113.3", 429},
		{"2001:db8::1", 200},
		{"2001:DB8:0::1", 429},
		// Unparsable: the trusted peer itself is the caller.
		{"not-an-ip", 200},
		{"not-an-ip-either", 429},
	}
	for i, s := range steps {
		resp, body := tg.get(t, "/customers/abc/signup", xff(s.xff)...)
		if resp.StatusCode != s.want {
			t.Errorf("step %d, X-Forwarded-For %q: status %d; want %d (%s)", i, s.xff, resp.StatusCode, s.want, body)
		}
	}
}

// TestForwardedForFromUntrustedPeer: with another network trusted, the
// peer 127.0.0.1 is not a proxy, and whatever X-Forwarded-For it sends,
// every request is 127.0.0.1's.
func TestForwardedForFromUntrustedPeer(t *testing.T) {
	for name, trusted := range map[string][]string{
		"other network trusted": {"10.0.0.0/8"},
		"nothing trusted":       nil,
	} {
		t.Run(name, func(t *testing.T) {
			tg := authOpenGateway(t, trusted...)
			if resp, body := tg.get(t, "/customers/abc/signup", xff("203.0.113.1")...); resp.StatusCode != 200 {
				t.Fatalf("first request: status %d (%s)", resp.StatusCode, body)
			}
			for i, v := range []string{"203.0.113.2", "198.51.100.1", "10.1.2.3", "127.0.0.2", "", "203.0.113.1, 10.0.0.1"} {
				var h []string
				if v != "" {
					h = xff(v)
				}
				if resp, body := tg.get(t, "/customers/abc/signup", h...); resp.StatusCode != 429 {
					t.Errorf("request %d with X-Forwarded-For %q: status %d; want 429 in 127.0.0.1's bucket (%s)", i, v, resp.StatusCode, body)
				}
			}
		})
	}
}

// rateLimitedLabels returns rate_limited_total by caller label.
func rateLimitedLabels(t *testing.T, tg *testGateway) map[string]float64 {
	t.Helper()
	mfs, err := tg.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != metrics.RateLimitedTotal {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() != "caller" {
					t.Errorf("unexpected label %s=%q", l.GetName(), l.GetValue())
				}
				got[l.GetValue()] += m.GetCounter().GetValue()
			}
		}
	}
	return got
}

// TestRateLimitedMetricNeverHoldsAnAddress floods from many forwarded
// addresses: the caller label is "anonymous", never an address.
func TestRateLimitedMetricNeverHoldsAnAddress(t *testing.T) {
	tg := authOpenGateway(t, "127.0.0.1/32")
	const n = 200
	for i := 0; i < n; i++ {
		addr := fmt.Sprintf("198.51.%d.%d", i/250, i%250+1)
		for j := 0; j < 2; j++ {
			if resp, body := tg.get(t, "/customers/abc/signup", xff(addr)...); resp.StatusCode != []int{200, 429}[j] {
				t.Fatalf("%s request %d: status %d (%s)", addr, j+1, resp.StatusCode, body)
			}
		}
	}
	if got := rateLimitedLabels(t, tg); len(got) != 1 || got["anonymous"] != n {
		t.Errorf("rate_limited_total by caller: %v; want only anonymous=%d", got, n)
	}
	if strings.Contains(tg.Logs.String(), "198.51.") {
		t.Error("a client address appears in the log")
	}
}

// quotaCounter wraps the upstream quota's limiter to count its decisions.
type quotaCounter struct {
	Limiter
	calls, refused atomic.Int64
}

func (q *quotaCounter) Allow(ctx context.Context, key string, p ratelimit.Policy) ratelimit.Decision {
	d := q.Limiter.Allow(ctx, key, p)
	q.calls.Add(1)
	if !d.Allowed {
		q.refused.Add(1)
	}
	return d
}

// TestUpstreamQuotaWaitsWhenItFits: at 1 request per second, a second
// upstream call right after the first waits for the next token (less than
// a second, within the request's deadline) and succeeds.
func TestUpstreamQuotaWaitsWhenItFits(t *testing.T) {
	q := &quotaCounter{Limiter: LocalLimiter(ratelimit.New(ratelimit.Options{MaxKeys: 1}))}
	tg := newTestGateway(t, func(o *testOptions) {
		o.Client.RateLimit = 1
		o.Client.Quota = q
	})
	for _, id := range []string{"first", "second"} {
		if resp, body := tg.get(t, "/customers/"+id+"/signup"); resp.StatusCode != 200 {
			t.Fatalf("%s: status %d; want 200 (%s)", id, resp.StatusCode, body)
		}
	}
	if q.refused.Load() == 0 {
		t.Error("the second call did not wait for the quota")
	}
	if got := tg.Upstream.calls.Load(); got != 2 {
		t.Errorf("upstream calls %d; want 2", got)
	}
}

// TestUpstreamQuotaExhausted: at 0.1 per second the next token is 10s
// away, longer than a request may wait: 503 with Retry-After, and the
// upstream is not called. Cache hits are served meanwhile and never take
// from the quota.
func TestUpstreamQuotaExhausted(t *testing.T) {
	clock := gatewaytest.NewClock()
	q := &quotaCounter{Limiter: LocalLimiter(ratelimit.New(ratelimit.Options{MaxKeys: 1, Now: clock.Now}))}
	tg := newTestGateway(t, func(o *testOptions) {
		o.Client.RateLimit = 0.1
		o.Client.Quota = q
	})
	if resp, body := tg.get(t, "/customers/cached/signup"); resp.StatusCode != 200 {
		t.Fatalf("first: status %d (%s)", resp.StatusCode, body)
	}
	resp, body := tg.get(t, "/customers/other/signup")
	if resp.StatusCode != 503 {
		t.Fatalf("over quota: status %d; want 503 (%s)", resp.StatusCode, body)
	}
	authBody(t, resp, body)
	if got := resp.Header.Get("Retry-After"); got != "10" {
		t.Errorf("Retry-After %q; want 10", got)
	}
	if got := tg.Upstream.calls.Load(); got != 1 {
		t.Errorf("upstream calls %d; want 1", got)
	}

	calls := q.calls.Load()
	for i := 0; i < 20; i++ {
		resp, body := tg.get(t, "/customers/cached/signup")
		if resp.StatusCode != 200 || resp.Header.Get("X-Cache") != "HIT" {
			t.Fatalf("cache hit %d: status %d, X-Cache %q (%s)", i, resp.StatusCode, resp.Header.Get("X-Cache"), body)
		}
	}
	if got := q.calls.Load(); got != calls {
		t.Errorf("cache hits asked the quota %d times; want never", got-calls)
	}

	clock.Advance(10 * time.Second)
	if resp, body := tg.get(t, "/customers/other/signup"); resp.StatusCode != 200 {
		t.Errorf("after the refill: status %d; want 200 (%s)", resp.StatusCode, body)
	}
}

// quotaAlwaysShort is a quota that is always exhausted, its next token
// always 300ms away, as when other requests keep taking the tokens.
type quotaAlwaysShort struct{ calls atomic.Int64 }

func (q *quotaAlwaysShort) Allow(context.Context, string, ratelimit.Policy) ratelimit.Decision {
	q.calls.Add(1)
	return ratelimit.Decision{RetryAfter: 300 * time.Millisecond}
}

// TestUpstreamQuotaWaitIsBounded: a request that keeps losing the token it
// waited for gives up once its waits add up to the most it may wait.
func TestUpstreamQuotaWaitIsBounded(t *testing.T) {
	q := &quotaAlwaysShort{}
	tg := newTestGateway(t, func(o *testOptions) {
		o.Client.RateLimit = 10
		o.Client.Quota = q
		o.Client.Timeout = 5 * time.Second
	})
	resp, body := tg.get(t, "/customers/abc/signup")
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("status %d, Retry-After %q; want 503 and 1 (%s)", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	// Waits of 300ms at 0, 300ms and 600ms; the fourth would end past 1s.
	if got := q.calls.Load(); got != 4 {
		t.Errorf("asked the quota %d times; want 4", got)
	}
	if got := tg.Upstream.calls.Load(); got != 0 {
		t.Errorf("upstream calls %d; want 0", got)
	}
}
