// Package proxy is the gateway itself: the API that answers
// GET /customers/{id}/signup from cache or from BlueTape, and the admin
// endpoints beside it.
package proxy

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"golang.org/x/sync/singleflight"

	"github.com/bluetape/bluetape-gateway/metrics"
	"github.com/bluetape/bluetape-gateway/proxy/bluetape"
	"github.com/bluetape/bluetape-gateway/proxy/callers"
	"github.com/bluetape/bluetape-gateway/proxy/identity"
	"github.com/bluetape/bluetape-gateway/proxy/ratelimit"
	"github.com/bluetape/bluetape-gateway/proxy/tracing"
)

// Options configures a Gateway. Fields without a stated default are
// required.
type Options struct {
	// Upstream is the BlueTape client that answers misses.
	Upstream *bluetape.Client
	// Locker, if not nil, elects one replica to call the upstream for a
	// cold id; the others wait for its answer in Cache.
	Locker Locker

	// Cache holds answers by id.
	Cache AnswerCache

	// RateLimit is the default per-caller policy; Limits holds the buckets.
	RateLimit ratelimit.Policy
	Limits    Limiter
	// Callers, if not nil, returns the current caller registry; every
	// request must then carry a bearer token of a registered caller. If
	// nil, the API is open and a caller is its client IP.
	Callers func() *callers.Registry
	// Verifier, if not nil, verifies the bearer tokens shaped as JSON Web
	// Tokens; every request must then carry a bearer token, either one
	// the Verifier accepts or a static token of a registered caller.
	Verifier TokenVerifier
	// TrustedProxies are the networks whose X-Forwarded-For is believed.
	TrustedProxies []*net.IPNet
	// MaxInFlight caps concurrent API requests; by default 4096. A
	// request over it is still answered from the cache, and refused only
	// if it needs the upstream.
	MaxInFlight int

	Metrics *metrics.Metrics
	Logger  *slog.Logger
	// Tracer traces every API request and passes its trace context on to
	// the upstream; by default, tracing.Propagation (nothing exported).
	Tracer *tracing.Tracer
}

// TokenVerifier verifies a caller's token of the configured issuer;
// *identity.Verifier is one. Its errors mean the token is refused.
type TokenVerifier interface {
	Verify(ctx context.Context, token string) (identity.Identity, error)
}

// Gateway serves the API. Create it with New.
type Gateway struct {
	upstream *bluetape.Client
	locker   Locker
	flight   singleflight.Group

	cache     AnswerCache
	policy    ratelimit.Policy
	policyHdr []string // RateLimit-Policy of the default policy
	limits    Limiter
	callers   func() *callers.Registry
	verifier  TokenVerifier
	maxFlight int64
	inFlight  atomic.Int64

	metrics *metrics.Metrics
	log     *slog.Logger
	tracer  *tracing.Tracer
	access  *accessLog
	echo    *echo.Echo
}

// New builds a gateway from o.
func New(o Options) (*Gateway, error) {
	switch {
	case o.Upstream == nil:
		return nil, errors.New("proxy: Upstream is required")
	case o.Cache == nil || o.Limits == nil:
		return nil, errors.New("proxy: Cache and Limits are required")
	case o.Metrics == nil || o.Logger == nil:
		return nil, errors.New("proxy: Metrics and Logger are required")
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 4096
	}
	if o.Tracer == nil {
		o.Tracer = tracing.Propagation()
	}
	g := &Gateway{
		upstream:  o.Upstream,
		locker:    o.Locker,
		cache:     o.Cache,
		policy:    o.RateLimit,
		limits:    o.Limits,
		callers:   o.Callers,
		verifier:  o.Verifier,
		maxFlight: int64(o.MaxInFlight),
		metrics:   o.Metrics,
		log:       o.Logger,
		tracer:    o.Tracer,
		access:    newAccessLog(o.Logger),
	}
	g.policyHdr = []string{policyHeader(g.policy)}
	g.echo = g.newEcho(o.TrustedProxies)
	return g, nil
}

// Handler returns the API's HTTP handler.
func (g *Gateway) Handler() http.Handler { return g.echo }

// signupRoute is the API's one route.
const signupRoute = "/customers/:id/signup"

func (g *Gateway) newEcho(trusted []*net.IPNet) *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.IPExtractor = ipExtractor(trusted)
	// Requests that no route serves (unknown paths, other methods) and
	// panics end here: they are answered and observed like the rest.
	e.HTTPErrorHandler = func(err error, c echo.Context) {
		ensureRequestID(c)
		st := requestState{start: time.Now(), caller: "-"}
		if c.Path() == signupRoute {
			st.trace = g.tracer.Begin(c.Request(), st.start)
		} else {
			st.trace = g.tracer.BeginUnmatched(c.Request(), st.start)
		}
		_ = g.finish(c, &st, err)
	}
	// Every other method on the route is refused and observed the same
	// way, OPTIONS included, which Echo would otherwise answer 204
	// itself, unobserved.
	e.Add(http.MethodOptions, signupRoute, func(echo.Context) error { return echo.ErrMethodNotAllowed })
	// Echo applies middleware, e.Use's and a route's alike, anew for
	// every request, at one allocation per layer. The chain is built once
	// here instead and registered as the route's handler.
	e.GET(signupRoute, chain(g.serveSignup,
		setRequestID,
		middleware.RecoverWithConfig(middleware.RecoverConfig{
			DisableStackAll:   true,
			DisablePrintStack: true,
			LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
				g.log.Error("panic serving request", "error", err, "stack", string(stack))
				return err
			},
		}),
	))
	return e
}

// chain wraps h in mw, the first outermost.
func chain(h echo.HandlerFunc, mw ...echo.MiddlewareFunc) echo.HandlerFunc {
	for i := len(mw) - 1; i >= 0; i-- {
		h = mw[i](h)
	}
	return h
}

// headerRequestID is X-Request-Id in its canonical form; Echo's constant
// is not canonical, which costs an allocation per lookup.
const headerRequestID = "X-Request-Id"

// setRequestID answers with the caller's X-Request-Id when it is sane,
// else with a new one. The headers are read and written by their
// canonical key, without Get's and Set's canonicalisation; a caller's id
// shares its request's header value, and a new one is made with its
// header value in one allocation.
func setRequestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		c.Response().Header()[headerRequestID] = requestIDValue(c)
		return next(c)
	}
}

// requestIDValue is the X-Request-Id value c's answer carries: the
// caller's own when it is sane, else a new one.
func requestIDValue(c echo.Context) []string {
	if v := c.Request().Header[headerRequestID]; len(v) > 0 && v[0] != "" && saneRequestID(v[0]) {
		return v[:1:1]
	}
	return newRequestIDValue()
}

// requestID returns the answer's request id, read by its canonical key
// (Header.Get would canonicalise it again on every call).
func requestID(c echo.Context) string {
	if v := c.Response().Header()[headerRequestID]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// newRequestIDValue returns a header value holding a new request id, 128
// random bits in hex, the value and the id in one allocation.
func newRequestIDValue() []string {
	r := new(struct {
		v  [1]string
		id [32]byte
	})
	var raw [16]byte
	binary.LittleEndian.PutUint64(raw[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(raw[8:], rand.Uint64())
	hex.Encode(r.id[:], raw[:])
	r.v[0] = unsafe.String(&r.id[0], len(r.id))
	return r.v[:]
}

// ensureRequestID sets X-Request-Id on an answer that no route's
// middleware handled, with the same rule as the route's.
func ensureRequestID(c echo.Context) {
	if requestID(c) == "" {
		c.Response().Header()[headerRequestID] = requestIDValue(c)
	}
}

// ipExtractor believes X-Forwarded-For only from the trusted networks:
// none of Echo's default trust of loopback, link-local and private ranges.
func ipExtractor(trusted []*net.IPNet) echo.IPExtractor {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, n := range trusted {
		opts = append(opts, echo.TrustIPRange(n))
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}

// saneRequestID accepts 1 to 128 characters that are safe in a log line
// and a header.
func saneRequestID(v string) bool {
	if len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '_', c == '.', c == ':', c == '/', c == '+', c == '=':
		default:
			return false
		}
	}
	return true
}

// InFlight returns the number of API requests being served.
func (g *Gateway) InFlight() int64 { return g.inFlight.Load() }
