package proxy

import (
	"context"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/trace"

	"github.com/bluetape/bluetape-gateway/metrics"
	"github.com/bluetape/bluetape-gateway/proxy/bluetape"
	"github.com/bluetape/bluetape-gateway/proxy/cache"
	"github.com/bluetape/bluetape-gateway/proxy/tracing"
)

// requestState is what the signup pipeline learns about one request, for
// its access log line and metrics.
type requestState struct {
	start    time.Time
	caller   string // caller name, "anonymous", or "-" before authentication
	cache    string // cache lookup result, "" if none
	upstream string // upstream outcome, "" if not called
	shared   bool   // answered by another request's upstream call
	// overCap: the request came over GATEWAY_MAX_IN_FLIGHT, so only the
	// cache may answer it.
	overCap bool
	trace   tracing.Request

	// unregistered is set for a caller authenticated by a token whose
	// subject has no entry: its metric label is callers.Unregistered.
	unregistered bool
}

// serveSignup runs the signup pipeline: authentication, rate limit, then
// the answer from cache or upstream. A request over the concurrency cap
// is still answered from the cache; it is refused only if it needs the
// upstream.
func (g *Gateway) serveSignup(c echo.Context) error {
	st := requestState{start: time.Now(), caller: "-"}
	st.trace = g.tracer.Begin(c.Request(), st.start)
	if r := c.Request(); r.ContentLength > 0 || len(r.TransferEncoding) > 0 {
		// A body where none belongs, or Content-Length beside
		// Transfer-Encoding (Go keeps only the latter): where it ends is
		// in doubt, so the connection is not read again (RFC 9112 §6.1).
		c.Response().Header()["Connection"] = connectionClose
		return g.finish(c, &st, errRequestBody)
	}
	n := g.inFlight.Add(1)
	g.metrics.InFlight().Inc()
	defer func() {
		g.inFlight.Add(-1)
		g.metrics.InFlight().Dec()
	}()
	st.overCap = n > g.maxFlight
	return g.finish(c, &st, g.signup(c, &st))
}

func (g *Gateway) signup(c echo.Context, st *requestState) error {
	key, policy, err := g.identify(c, st)
	if err != nil {
		return err
	}
	if err := g.limit(c, st, key, policy); err != nil {
		return err
	}
	id := c.Param("id")
	if !ValidID(id) {
		return errInvalidID
	}

	ctx := c.Request().Context()
	entry, state := g.cache.Get(ctx, id)
	if state == cache.Fresh {
		if entry.Negative() {
			st.cache = metrics.CacheNegativeHit
			return errNotFound
		}
		st.cache = metrics.CacheHit
		return writeSignup(c, entry.Body, xCacheHit)
	}

	st.cache = metrics.CacheMiss
	var body []byte
	if st.overCap {
		err = errAtCapacity
		tracing.AddEvent(st.trace.Context(ctx), tracing.EventCapacityShed)
	} else {
		body, err = g.load(ctx, id, requestID(c), st)
	}
	if err != nil {
		// The upstream failed, or cannot be asked now: a stale entry
		// is better than an error.
		ue := bluetape.ErrorOf(err)
		if state == cache.Stale && (err == errAtCapacity || ue != nil && ue.Failed()) {
			st.cache = metrics.CacheStale
			return writeSignup(c, entry.Body, xCacheStale)
		}
		return err
	}
	return writeSignup(c, body, xCacheMiss)
}

func writeSignup(c echo.Context, body []byte, xCache []string) error {
	c.Response().Header()["X-Cache"] = xCache
	return writeJSON(c, http.StatusOK, body)
}

// The X-Cache values, shared by every answer's header map like
// jsonContentType.
var (
	xCacheHit   = []string{"HIT"}
	xCacheMiss  = []string{"MISS"}
	xCacheStale = []string{"STALE"}
)

// load gets id's answer from upstream, sharing one call among all the
// requests for the same id that arrive while it runs. The shared call is
// detached from any one caller: a caller that goes away stops waiting, but
// the call goes on for the others, bounded by its own deadline. Its answer
// is cached before the waiters get it. The answer is the encoded 200
// body, or an error: BlueTape's 404 and 400 are *bluetape.Error too.
func (g *Gateway) load(ctx context.Context, id, requestID string, st *requestState) ([]byte, error) {
	// The request's server span is the parent of the upstream attempts
	// and waits.
	ctx = st.trace.Context(ctx)
	waitStart := time.Now()
	var ran atomic.Bool // this request's call is the one shared
	ch := g.flight.DoChan(id, func() (any, error) {
		ran.Store(true)
		ctx := context.WithoutCancel(ctx)
		if g.locker != nil {
			// Waiting for another replica's call lasts at most its lock,
			// one fetch budget; the call of our own then gets a budget of
			// its own.
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, 2*g.upstream.Budget())
			defer cancel()
			awaitStart := time.Now()
			if e, ok := g.awaitLeader(ctx, id); ok {
				g.tracer.RecordWait(ctx, tracing.WaitReplica, awaitStart, true, trace.SpanContext{})
				if e.Negative() {
					return nil, bluetape.NotFound(strconv.Itoa(http.StatusNotFound))
				}
				return e.Body, nil
			}
		}
		fctx, cancel := context.WithTimeout(ctx, g.upstream.Budget())
		defer cancel()
		body, err := g.upstream.Fetch(fctx, id, requestID)
		switch ue := bluetape.ErrorOf(err); {
		case err == nil:
			g.cache.SetFound(ctx, id, body)
		case ue != nil && ue.Status == http.StatusNotFound:
			g.cache.SetNotFound(ctx, id)
		}
		return body, err
	})
	select {
	case r := <-ch:
		st.shared = r.Shared
		if !ran.Load() {
			g.tracer.RecordWait(ctx, tracing.WaitLocal, waitStart, true, trace.SpanContext{})
		}
		switch ue := bluetape.ErrorOf(r.Err); {
		case r.Err == nil:
			st.upstream = upstreamOK
		case ue != nil:
			st.upstream = ue.Outcome
		}
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.([]byte), nil
	case <-ctx.Done():
		if !ran.Load() {
			g.tracer.RecordWait(ctx, tracing.WaitLocal, waitStart, false, trace.SpanContext{})
		}
		return nil, ctx.Err()
	}
}

// upstreamOK is the upstream outcome of a 200.
const upstreamOK = "200"

// awaitLeader holds the election for id among replicas; a Locker must be
// configured. If another replica is calling the upstream, it waits for
// that replica's answer to appear in the shared cache and returns it. It
// returns false when this replica should call the upstream itself: it won
// the election (the lock is released when ctx's call ends), the election
// cannot be held, the leader died (its lock expired), or the leader
// finished without caching an answer.
func (g *Gateway) awaitLeader(ctx context.Context, id string) (*cache.Entry, bool) {
	for {
		unlock, err := g.locker.TryLock(ctx, id, g.upstream.Budget())
		if err != nil {
			return nil, false
		}
		if unlock != nil {
			context.AfterFunc(ctx, unlock)
			// The previous leader may have cached the answer just before
			// releasing the lock.
			if e, ok := g.freshEntry(ctx, id); ok {
				unlock()
				return e, true
			}
			return nil, false
		}
		if e, ok := g.freshEntry(ctx, id); ok {
			return e, true
		}
		if g.locker.Wait(ctx, id) != nil {
			return nil, false
		}
		if e, ok := g.freshEntry(ctx, id); ok {
			return e, true
		}
	}
}

// freshEntry returns id's fresh cached entry, if there is one.
func (g *Gateway) freshEntry(ctx context.Context, id string) (*cache.Entry, bool) {
	e, state := g.cache.Get(ctx, id)
	return e, state == cache.Fresh
}

// finish writes err's answer, if any, then records the request's metrics
// and access log line.
func (g *Gateway) finish(c echo.Context, st *requestState, err error) error {
	err = cutByShutdown(c, err)
	status := c.Response().Status
	var ae *apiError
	if err != nil {
		ae = errorStatus(err)
		status = ae.status
		writeError(c, ae)
	}
	d := time.Since(st.start)
	rid := requestID(c)
	tid, sid, sampled := st.trace.IDs()
	switch {
	case sampled:
		g.metrics.RequestWithTrace(status, d, tid.String())
	case st.cache == metrics.CacheHit:
		g.metrics.Request(status, d)
	default:
		g.metrics.RequestWithExemplar(status, d, rid)
	}
	if st.cache != "" {
		g.metrics.CacheLookup(st.cache)
	}
	g.access.write(c, st, status, d, rid, tid, sid, ae)
	st.trace.End(tracing.ServerResult{Status: status, Caller: st.caller, Cache: st.cache, Shared: st.shared})
	return nil
}
