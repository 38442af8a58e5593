package proxy

import (
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"sync/atomic"
	"unsafe"

	"github.com/labstack/echo/v4"

	"github.com/bluetape/bluetape-gateway/proxy/callers"
	"github.com/bluetape/bluetape-gateway/proxy/identity"
	"github.com/bluetape/bluetape-gateway/proxy/ratelimit"
)

// identify authenticates the caller when a registry or a token verifier
// is configured, and returns the rate-limit key and policy that apply.
// Without either, a caller is its client address, as the IP extractor
// (see ipExtractor) finds it; the key is then the address in canonical
// form, so that one client has one bucket however a proxy spells its
// address.
func (g *Gateway) identify(c echo.Context, st *requestState) (string, ratelimit.Policy, error) {
	if g.callers == nil && g.verifier == nil {
		st.caller = callers.Anonymous
		return clientKey(c.RealIP()), g.policy, nil
	}
	tok, ok := callers.BearerToken(c.Request().Header.Get(echo.HeaderAuthorization))
	if !ok {
		return "", g.policy, errUnauthorized
	}
	var reg *callers.Registry
	if g.callers != nil {
		reg = g.callers()
	}
	if g.verifier != nil && identity.IsJWT(tok) {
		return g.identifyToken(c, st, reg, tok)
	}
	if reg == nil {
		return "", g.policy, errInvalidToken
	}
	caller, ok := reg.Authenticate(tok)
	if !ok {
		return "", g.policy, errInvalidToken
	}
	st.caller = caller.Name
	return caller.Name, callerPolicy(g.policy, caller), nil
}

// identifyToken authenticates a caller by a token of the issuer. A caller
// the registry lists by subject is that entry, sharing its name and
// bucket with the entry's static token; with a registry, any other
// subject is refused. Without one, every subject has its own bucket at
// the default policy, keyed apart from static callers' names (which
// cannot contain a colon) and client addresses.
func (g *Gateway) identifyToken(c echo.Context, st *requestState, reg *callers.Registry, tok string) (string, ratelimit.Policy, error) {
	id, err := g.verifier.Verify(c.Request().Context(), tok)
	if err != nil {
		return "", g.policy, &apiError{status: http.StatusUnauthorized, reason: errInvalidToken.reason,
			challenge: errInvalidToken.challenge, cause: err}
	}
	st.caller = id.Caller
	if reg == nil {
		st.unregistered = true
		return "jwt:" + id.Subject, g.policy, nil
	}
	caller, ok := reg.BySubject(id.Subject)
	if !ok {
		return "", g.policy, errForbidden
	}
	st.caller = caller.Name
	return caller.Name, callerPolicy(g.policy, caller), nil
}

// callerPolicy is the default policy with caller's own rate and burst, each
// when set. A caller given a rate but no burst keeps the default burst.
func callerPolicy(p ratelimit.Policy, caller *callers.Caller) ratelimit.Policy {
	if caller.Rate != nil {
		p.Rate = *caller.Rate
	}
	if caller.Burst != nil {
		p.Burst = *caller.Burst
	}
	p.Burst = max(p.Burst, 1)
	return p
}

// clientKey is the canonical text of an IP address (an IPv4-mapped IPv6
// address as IPv4), or s itself when it is not one.
func clientKey(s string) string {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Is4() {
		// A parsed IPv4 address is already in its one textual form.
		return s
	}
	return a.Unmap().String()
}

// limit takes a token from the caller's bucket and sets the RateLimit-Policy
// and RateLimit headers of draft-ietf-httpapi-ratelimit-headers on the
// answer, whether the request is allowed or refused.
func (g *Gateway) limit(c echo.Context, st *requestState, key string, p ratelimit.Policy) error {
	if p.Unlimited() {
		return nil
	}
	d := g.limits.Allow(c.Request().Context(), key, p)
	h := c.Response().Header()
	if p == g.policy {
		h["Ratelimit-Policy"] = g.policyHdr
	} else {
		h["Ratelimit-Policy"] = []string{policyHeader(p)}
	}
	h["Ratelimit"] = limitValue(d)
	if d.Allowed {
		return nil
	}
	label := st.caller
	if st.unregistered {
		label = callers.Unregistered
	}
	g.metrics.RateLimited(label)
	return &apiError{status: http.StatusTooManyRequests,
		reason: "Rate limit exceeded; retry after the time in Retry-After.", retryAfter: d.RetryAfter}
}

// policyName names the one quota policy in the rate limit headers.
const policyName = `"caller"`

// policyHeader is the RateLimit-Policy field: a structured-field list of
// one item, the policy's name with q, the quota in requests, and w, its
// window in whole seconds (at least 1). The window is the time an empty
// bucket takes to fill, rounded up, and the quota is what the rate allows
// in that window, never less than the burst: "caller";q=100;w=2 for 50/s
// with bursts of 100, "caller";q=1;w=5 for 0.2/s.
func policyHeader(p ratelimit.Policy) string {
	w := retryAfterSeconds(p.Window())
	q := max(p.Burst, int(math.Floor(p.Rate*float64(w)+1e-9)))
	b := make([]byte, 0, 40)
	b = append(b, policyName...)
	b = append(b, ";q="...)
	b = strconv.AppendInt(b, int64(q), 10)
	b = append(b, ";w="...)
	b = strconv.AppendInt(b, int64(w), 10)
	return string(b)
}

// limitFields are the RateLimit field's parameters: r, the whole requests
// left, and t, the effective window in whole seconds. When the request is
// refused, t is the Retry-After delay (the draft asks that Retry-After not
// end before the window does); otherwise it is the time until the bucket
// is full again. Spreading r requests over t seconds never meets a
// refusal.
func limitFields(d ratelimit.Decision) (r, t int) {
	w := d.Reset
	if !d.Allowed {
		w = d.RetryAfter
	}
	if w > 0 {
		t = retryAfterSeconds(w)
	}
	return d.Remaining, t
}

// appendLimit appends the RateLimit field: the policy's name with r and t.
func appendLimit(b []byte, r, t int) []byte {
	b = append(b, policyName...)
	b = append(b, ";r="...)
	b = strconv.AppendInt(b, int64(r), 10)
	b = append(b, ";t="...)
	return strconv.AppendInt(b, int64(t), 10)
}

// limitValue is the RateLimit field as a header map's value. The values
// of small r and t, which are nearly all of them, are made once and then
// shared by every answer that carries them, like jsonContentType: a
// cache hit's RateLimit field then costs no allocation. Others take one.
func limitValue(d ratelimit.Decision) []string {
	r, t := limitFields(d)
	if r < 0 || r >= limitValuesR || t < 0 || t >= limitValuesT {
		return newLimitValue(r, t)
	}
	p := &limitValues[r*limitValuesT+t]
	if v := p.Load(); v != nil {
		return v[:]
	}
	v := newLimitValue(r, t)
	p.Store((*[1]string)(v))
	return v
}

// newLimitValue returns the RateLimit field's value, the string and its
// one-element slice in one allocation.
func newLimitValue(r, t int) []string {
	v := new(struct {
		v [1]string
		b [56]byte // the policy name and two 20-digit integers
	})
	b := appendLimit(v.b[:0], r, t)
	v.v[0] = unsafe.String(&b[0], len(b))
	return v.v[:]
}

const limitValuesR, limitValuesT = 512, 16

var limitValues [limitValuesR * limitValuesT]atomic.Pointer[[1]string]
