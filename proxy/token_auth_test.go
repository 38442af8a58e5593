package proxy

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/bluetape/bluetape-gateway/proxy/callers"
	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
	"github.com/bluetape/bluetape-gateway/proxy/identity"
	"github.com/bluetape/bluetape-gateway/proxy/identity/identitytest"
	"github.com/bluetape/bluetape-gateway/proxy/ratelimit"
)

// newTokenVerifier returns a verifier of is whose key set is loaded.
func newTokenVerifier(t testing.TB, is *identitytest.Issuer) *identity.Verifier {
	t.Helper()
	v, err := identity.New(identity.Options{
		Issuer:     is.URL,
		Audience:   identitytest.Audience,
		HTTPClient: is.Server.Client(),
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = v.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	gatewaytest.WaitFor(t, 10*time.Second, "the key set to load", v.Ready)
	return v
}

// staticToken is a static caller's token.
const staticToken = "static-caller-token-1"

// TestTokenAuthentication covers each decision with an issuer and a
// callers file: who is let in, under which name, and how the others are
// refused.
func TestTokenAuthentication(t *testing.T) {
	is := identitytest.NewIssuer(t, identitytest.RSA())
	other := identitytest.NewIssuer(t, identitytest.RSA2())
	// billing/billing-api is listed by subject, with its own burst.
	reg := mustParseCallers(t, authCallersYAML(authCaller{name: "static-caller", token: staticToken})+
		"  - name: billing-api\n    subject: system:serviceaccount:billing:billing-api\n    burst: 7\n")
	v := newTokenVerifier(t, is)
	tg := newTestGateway(t, func(o *testOptions) {
		o.Callers = func() *callers.Registry { return reg }
		o.Verifier = v
		o.RateLimit = ratelimit.Policy{Rate: 50, Burst: 100}
	})
	now := time.Now()
	listed := is.Token(t, identitytest.RSA(), "billing", "billing-api", now)
	unlisted := is.Token(t, identitytest.RSA(), "elsewhere", "intruder", now)
	expiredClaims := identitytest.ServiceAccountClaims(is.URL, "billing", "billing-api", now.Add(-3*time.Hour))
	expired := identitytest.Sign(t, identitytest.RSA(), expiredClaims)
	wrongAud := identitytest.ServiceAccountClaims(is.URL, "billing", "billing-api", now)
	wrongAud.Audience = []string{"https://kubernetes.default.svc.cluster.local"}
	foreignAudience := identitytest.Sign(t, identitytest.RSA(), wrongAud)
	foreign := other.Token(t, identitytest.RSA2(), "billing", "billing-api", now)

	const invalidToken = `Bearer error="invalid_token"`
	cases := []struct {
		name      string
		header    []string
		status    int
		challenge string // WWW-Authenticate
		caller    string // in the access log
	}{
		{"no token", nil, 401, "Bearer", "-"},
		{"not a bearer token", []string{"Authorization", "Basic YTpi"}, 401, "Bearer", "-"},
		{"listed subject", gatewaytest.Bearer(listed), 200, "", "billing-api"},
		{"static token beside tokens", gatewaytest.Bearer(staticToken), 200, "", "static-caller"},
		{"unknown static token", gatewaytest.Bearer("not-a-registered-token"), 401, invalidToken, "-"},
		{"unlisted subject", gatewaytest.Bearer(unlisted), 403, "", "elsewhere/intruder"},
		{"expired", gatewaytest.Bearer(expired), 401, invalidToken, "-"},
		{"another audience", gatewaytest.Bearer(foreignAudience), 401, invalidToken, "-"},
		{"another issuer", gatewaytest.Bearer(foreign), 401, invalidToken, "-"},
		{"tampered", gatewaytest.Bearer(listed[:len(listed)-4] + "AAAA"), 401, invalidToken, "-"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			calls := tg.Upstream.calls.Load()
			rid := "token-auth-" + strings.ReplaceAll(tc.name, " ", "-")
			resp, body := tg.get(t, "/customers/abc/signup", append(tc.header, "X-Request-Id", rid)...)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d; want %d (%s)", resp.StatusCode, tc.status, body)
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != tc.challenge {
				t.Errorf("WWW-Authenticate %q; want %q", got, tc.challenge)
			}
			if tc.status != 200 {
				authBody(t, resp, body)
				if got := tg.Upstream.calls.Load(); got != calls {
					t.Errorf("upstream called on a %d", tc.status)
				}
			}
			if line := accessLine(t, tg.Logs, rid); line["caller"] != tc.caller {
				t.Errorf("access log caller %v; want %q", line["caller"], tc.caller)
			}
			for _, secret := range []string{listed, unlisted, expired, staticToken} {
				if strings.Contains(tg.Logs.String(), secret) || strings.Contains(body, secret) {
					t.Fatal("a token appears in the logs or the body")
				}
			}
		})
	}

	t.Run("listed subject's burst", func(t *testing.T) {
		resp, _ := tg.get(t, "/customers/abc/signup", gatewaytest.Bearer(listed)...)
		if got, want := resp.Header.Get("RateLimit-Policy"), policyHeader(ratelimit.Policy{Rate: 50, Burst: 7}); got != want {
			t.Errorf("RateLimit-Policy %q; want %q", got, want)
		}
	})
}

// TestTokenAuthenticationWithoutCallersFile checks that, with an issuer
// and no callers file, authentication is still mandatory, every valid
// token gets the default policy in a bucket of its own subject, and the
// metric label is unregistered while the log names the caller.
func TestTokenAuthenticationWithoutCallersFile(t *testing.T) {
	is := identitytest.NewIssuer(t, identitytest.EC())
	v := newTokenVerifier(t, is)
	tg := newTestGateway(t, func(o *testOptions) {
		o.Verifier = v
		o.RateLimit = ratelimit.Policy{Rate: 0.001, Burst: 1}
	})
	now := time.Now()
	first := is.Token(t, identitytest.EC(), "billing", "billing-api", now)
	second := is.Token(t, identitytest.EC(), "orders", "orders-api", now)

	for _, h := range [][]string{nil, gatewaytest.Bearer("a-static-token")} {
		resp, body := tg.get(t, "/customers/abc/signup", h...)
		if resp.StatusCode != 401 {
			t.Fatalf("%v: status %d; want 401 (%s)", h, resp.StatusCode, body)
		}
	}
	resp, body := tg.get(t, "/customers/abc/signup", append(gatewaytest.Bearer(first), "X-Request-Id", "first-1")...)
	if resp.StatusCode != 200 {
		t.Fatalf("first subject: status %d (%s)", resp.StatusCode, body)
	}
	if got, want := resp.Header.Get("RateLimit-Policy"), policyHeader(ratelimit.Policy{Rate: 0.001, Burst: 1}); got != want {
		t.Errorf("RateLimit-Policy %q; want the default %q", got, want)
	}
	if line := accessLine(t, tg.Logs, "first-1"); line["caller"] != "billing/billing-api" {
		t.Errorf("access log caller %v; want billing/billing-api", line["caller"])
	}
	if resp, _ := tg.get(t, "/customers/abc/signup", gatewaytest.Bearer(first)...); resp.StatusCode != 429 {
		t.Fatalf("first subject again: status %d; want 429, its bucket is empty", resp.StatusCode)
	}
	if resp, _ := tg.get(t, "/customers/abc/signup", gatewaytest.Bearer(second)...); resp.StatusCode != 200 {
		t.Fatalf("second subject: status %d; want 200, its bucket is its own", resp.StatusCode)
	}
	if got := metricValue(t, tg.Registry, "bluetape_gateway_rate_limited_total", "caller", callers.Unregistered); got != 1 {
		t.Errorf("rate_limited_total{caller=unregistered} = %v; want 1", got)
	}
	if got := metricValue(t, tg.Registry, "bluetape_gateway_rate_limited_total", "caller", "billing/billing-api"); got != 0 {
		t.Errorf("a caller's subject became a metric label")
	}
}

// TestTokenSharesBucketWithStaticToken checks that an entry with both a
// subject and a token_sha256 is one caller with one bucket, whichever
// credential it presents.
func TestTokenSharesBucketWithStaticToken(t *testing.T) {
	is := identitytest.NewIssuer(t, identitytest.RSA())
	v := newTokenVerifier(t, is)
	reg := mustParseCallers(t, authCallersYAML(authCaller{name: "billing-api", token: staticToken,
		extra: "subject: system:serviceaccount:billing:billing-api; rate: 0.001; burst: 1"}))
	tg := newTestGateway(t, func(o *testOptions) {
		o.Callers = func() *callers.Registry { return reg }
		o.Verifier = v
		o.RateLimit = ratelimit.Policy{Rate: 50, Burst: 100}
	})
	if resp, body := tg.get(t, "/customers/abc/signup", gatewaytest.Bearer(staticToken)...); resp.StatusCode != 200 {
		t.Fatalf("static token: status %d (%s)", resp.StatusCode, body)
	}
	tok := is.Token(t, identitytest.RSA(), "billing", "billing-api", time.Now())
	resp, _ := tg.get(t, "/customers/abc/signup", gatewaytest.Bearer(tok)...)
	if resp.StatusCode != 429 {
		t.Fatalf("token after the static token: status %d; want 429 from the shared bucket", resp.StatusCode)
	}
	if got := metricValue(t, tg.Registry, "bluetape_gateway_rate_limited_total", "caller", "billing-api"); got != 1 {
		t.Errorf("rate_limited_total{caller=billing-api} = %v; want 1", got)
	}
}

func mustParseCallers(t *testing.T, yaml string) *callers.Registry {
	t.Helper()
	r, err := callers.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// accessLine returns the access log line of the request rid.
func accessLine(t *testing.T, logs *gatewaytest.LogBuffer, rid string) map[string]any {
	t.Helper()
	for _, l := range logs.Records("request") {
		if l["request_id"] == rid {
			return l
		}
	}
	t.Fatalf("no access log line for %s in\n%s", rid, logs.String())
	return nil
}
