package proxy

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/bluetape/bluetape-gateway/metrics"
	"github.com/bluetape/bluetape-gateway/proxy/cache"
)

// requestState is what the signup pipeline learns about one request, for
// its access log line and metrics.
type requestState struct {
	start    time.Time
	caller   string // caller name, "anonymous", or "-" before authentication
	cache    string // cache lookup result, "" if none
	upstream string // upstream outcome, "" if not called
	shared   bool   // answered by another request's upstream call
}

const anonymous = "anonymous"

// serveSignup runs the signup pipeline: concurrency cap, authentication,
// rate limit, then the answer from cache or upstream.
func (g *Gateway) serveSignup(c echo.Context) error {
	st := requestState{start: time.Now(), caller: "-"}
	n := g.inFlight.Add(1)
	g.metrics.InFlight().Inc()
	defer func() {
		g.inFlight.Add(-1)
		g.metrics.InFlight().Dec()
	}()
	var err error
	if n > g.maxFlight {
		err = errAtCapacity
	} else {
		err = g.signup(c, &st)
	}
	return g.finish(c, &st, err)
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

	answer, err := g.load(ctx, id, c.Response().Header().Get(headerRequestID), st)
	if err != nil {
		var ue *upstreamError
		errors.As(err, &ue)
		if state == cache.Stale && ue != nil && ue.status != statusClientClosed {
			st.cache = metrics.CacheStale
			return writeSignup(c, entry.Body, xCacheStale)
		}
		st.cache = metrics.CacheMiss
		if ue != nil {
			return ue.apiError()
		}
		return err
	}
	st.cache = metrics.CacheMiss
	switch answer.status {
	case http.StatusOK:
		return writeSignup(c, answer.body, xCacheMiss)
	case http.StatusNotFound:
		return errNotFound
	default:
		return &apiError{status: http.StatusBadRequest, reason: answer.reason}
	}
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
// is cached before the waiters get it.
func (g *Gateway) load(ctx context.Context, id, requestID string, st *requestState) (upstreamAnswer, error) {
	ch := g.flight.DoChan(id, func() (any, error) {
		// Waiting for another replica's call lasts at most its lock, one
		// fetch budget; the call of our own then gets a budget of its own.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*g.fetchBudget())
		defer cancel()
		answer, err, done := g.awaitLeader(ctx, id)
		if !done {
			fctx, cancel := context.WithTimeout(ctx, g.fetchBudget())
			defer cancel()
			answer, err = g.fetch(fctx, id, requestID)
		}
		if err == nil && !done {
			switch answer.status {
			case http.StatusOK:
				g.cache.SetFound(ctx, id, answer.body)
			case http.StatusNotFound:
				g.cache.SetNotFound(ctx, id)
			}
		}
		return answer, err
	})
	select {
	case r := <-ch:
		st.shared = r.Shared
		var ue *upstreamError
		switch {
		case r.Err == nil:
			st.upstream = strconv.Itoa(r.Val.(upstreamAnswer).status)
		case errors.As(r.Err, &ue):
			st.upstream = ue.outcome
		}
		if r.Err != nil {
			return upstreamAnswer{}, r.Err
		}
		return r.Val.(upstreamAnswer), nil
	case <-ctx.Done():
		return upstreamAnswer{}, ctx.Err()
	}
}

// leaderPoll is how often a replica waiting for another's upstream call
// looks for the answer in the shared cache.
const leaderPoll = 10 * time.Millisecond

// awaitLeader holds the election for id among replicas when a Locker is
// configured. If another replica is calling the upstream, it waits for
// that replica's answer to appear in the shared cache and returns it with
// done set. It returns done unset when this replica should call the
// upstream itself: it won the election (the lock is released when ctx's
// call ends), the election cannot be held, the leader died (its lock
// expired), or the leader finished without caching an answer.
func (g *Gateway) awaitLeader(ctx context.Context, id string) (upstreamAnswer, error, bool) {
	if g.locker == nil {
		return upstreamAnswer{}, nil, false
	}
	for {
		unlock, err := g.locker.TryLock(ctx, id, g.fetchBudget())
		if err != nil {
			return upstreamAnswer{}, nil, false
		}
		if unlock != nil {
			context.AfterFunc(ctx, unlock)
			// The previous leader may have cached the answer just before
			// releasing the lock.
			if a, ok := g.cachedAnswer(ctx, id); ok {
				unlock()
				return a, nil, true
			}
			return upstreamAnswer{}, nil, false
		}
		if a, ok := g.cachedAnswer(ctx, id); ok {
			return a, nil, true
		}
		if err := sleep(ctx, leaderPoll); err != nil {
			return upstreamAnswer{}, nil, false
		}
	}
}

// cachedAnswer returns id's fresh cached answer, if there is one.
func (g *Gateway) cachedAnswer(ctx context.Context, id string) (upstreamAnswer, bool) {
	e, state := g.cache.Get(ctx, id)
	switch {
	case state != cache.Fresh:
		return upstreamAnswer{}, false
	case e.Negative():
		return upstreamAnswer{status: http.StatusNotFound}, true
	default:
		return upstreamAnswer{status: http.StatusOK, body: e.Body}, true
	}
}

// fetchBudget bounds one shared upstream call, retries included: two
// attempts' worth of time.
func (g *Gateway) fetchBudget() time.Duration { return 2 * g.timeout }

// finish writes err's answer, if any, then records the request's metrics
// and access log line.
func (g *Gateway) finish(c echo.Context, st *requestState, err error) error {
	status := c.Response().Status
	if err != nil {
		status = writeError(c, err)
	}
	d := time.Since(st.start)
	rid := c.Response().Header().Get(headerRequestID)
	if st.cache == metrics.CacheHit {
		g.metrics.Request(status, d)
	} else {
		g.metrics.RequestWithExemplar(status, d, rid)
	}
	if st.cache != "" {
		g.metrics.CacheLookup(st.cache)
	}
	g.access.write(c, st, status, d, rid, err)
	return nil
}

// newRequestID returns 128 random bits in hex, in one allocation.
func newRequestID() string {
	var raw [16]byte
	binary.LittleEndian.PutUint64(raw[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(raw[8:], rand.Uint64())
	var out [32]byte
	hex.Encode(out[:], raw[:])
	return string(out[:])
}
