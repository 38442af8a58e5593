package proxy

import (
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/bluetape/bluetape-gateway/proxy/callers"
	"github.com/bluetape/bluetape-gateway/proxy/ratelimit"
)

// identify authenticates the caller when a registry is configured, and
// returns the rate-limit key and policy that apply.
func (g *Gateway) identify(c echo.Context, st *requestState) (string, ratelimit.Policy, error) {
	if g.callers == nil {
		st.caller = anonymous
		return c.RealIP(), g.policy, nil
	}
	tok, ok := callers.BearerToken(c.Request().Header.Get(echo.HeaderAuthorization))
	if !ok {
		return "", g.policy, errUnauthorized
	}
	caller, ok := g.callers().Authenticate(tok)
	if !ok {
		return "", g.policy, errUnauthorized
	}
	st.caller = caller.Name
	p := g.policy
	if caller.Rate != nil {
		p.Rate = *caller.Rate
	}
	if caller.Burst != nil {
		p.Burst = *caller.Burst
	} else if caller.Rate != nil && p.Burst < 1 {
		p.Burst = 1
	}
	return caller.Name, p, nil
}

// limit takes a token from the caller's bucket and sets the IETF
// RateLimit-Policy and RateLimit headers (draft-ietf-httpapi-ratelimit-headers).
func (g *Gateway) limit(c echo.Context, st *requestState, key string, p ratelimit.Policy) error {
	if p.Unlimited() {
		return nil
	}
	d := g.limits.Allow(c.Request().Context(), key, p)
	h := c.Response().Header()
	h.Set("RateLimit-Policy", policyHeader(p))
	h.Set("RateLimit", limitHeader(d))
	if d.Allowed {
		return nil
	}
	name := st.caller
	g.metrics.RateLimited(name)
	return &apiError{status: http.StatusTooManyRequests,
		reason: "Rate limit exceeded; retry after the time in Retry-After.", retryAfter: d.RetryAfter}
}

func policyHeader(p ratelimit.Policy) string {
	b := make([]byte, 0, 40)
	b = append(b, `"caller";q=`...)
	b = strconv.AppendInt(b, int64(p.Burst), 10)
	b = append(b, ";w="...)
	b = strconv.AppendInt(b, int64(retryAfterSeconds(p.Window())), 10)
	return string(b)
}

func limitHeader(d ratelimit.Decision) string {
	t := d.Reset
	if !d.Allowed {
		t = d.RetryAfter
	}
	b := make([]byte, 0, 32)
	b = append(b, `"caller";r=`...)
	b = strconv.AppendInt(b, int64(d.Remaining), 10)
	b = append(b, ";t="...)
	secs := 0
	if t > 0 {
		secs = retryAfterSeconds(t)
	}
	b = strconv.AppendInt(b, int64(secs), 10)
	return string(b)
}
