package identity

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
	"github.com/bluetape/bluetape-gateway/proxy/identity/identitytest"
)

const audience = identitytest.Audience

// signingKey, issuer and k8sClaims are identitytest's, shared with the
// gateway's tests.
type (
	signingKey = identitytest.Key
	issuer     = identitytest.Issuer
	k8sClaims  = identitytest.Claims
)

func newIssuer(t testing.TB, tlsServer bool, keys ...signingKey) *issuer {
	t.Helper()
	if tlsServer {
		return identitytest.NewTLSIssuer(t, keys...)
	}
	return identitytest.NewIssuer(t, keys...)
}

// newClock returns a settable clock for Options.Now.
func newClock() *gatewaytest.Clock { return gatewaytest.NewClockAt(time.Unix(1_900_000_000, 0)) }

// podClaims returns the claims of billing/billing-api's token issued at
// now, valid for an hour.
func podClaims(iss string, now time.Time) k8sClaims {
	return identitytest.ServiceAccountClaims(iss, "billing", "billing-api", now)
}

// sign returns claims as a compact JWS signed by k.
func sign(t testing.TB, k signingKey, claims any) string {
	t.Helper()
	return identitytest.Sign(t, k, claims)
}

// newVerifier returns a Verifier for is with the clock c.
func newVerifier(t testing.TB, is *issuer, c *gatewaytest.Clock, o Options) *Verifier {
	t.Helper()
	o.Issuer = is.URL
	if o.Audience == "" {
		o.Audience = audience
	}
	if o.Now == nil {
		o.Now = c.Now
	}
	if o.HTTPClient == nil && o.CAFile == "" {
		o.HTTPClient = is.Server.Client()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	v, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// loadedVerifier returns a clock, an issuer publishing keys and a
// Verifier of its tokens on that clock, which has fetched the keys.
func loadedVerifier(t testing.TB, keys ...signingKey) (*gatewaytest.Clock, *issuer, *Verifier) {
	t.Helper()
	c := newClock()
	is := newIssuer(t, false, keys...)
	v := newVerifier(t, is, c, Options{})
	load(v)
	return c, is, v
}

// load fetches the key set once, as Run's first attempt does.
func load(v *Verifier) {
	v.fetchMu.Lock()
	v.fetchLocked(context.Background())
	v.fetchMu.Unlock()
}
