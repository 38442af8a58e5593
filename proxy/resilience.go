package proxy

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/bluetape/bluetape-gateway/metrics"
	"github.com/bluetape/bluetape-gateway/proxy/ratelimit"
)

// Retry and circuit breaker tuning. Retries are for the blips of a
// healthy upstream (a reset connection, a 502 from its load balancer); the
// budget and the breaker keep them from adding load to a sick one.
const (
	maxAttempts   = 3
	backoffBase   = 50 * time.Millisecond
	backoffCap    = time.Second
	quotaMaxWait  = time.Second // longest a request queues for the upstream quota
	breakerWindow = 10 * time.Second
	breakerOpen   = 5 * time.Second // how long the breaker stays open before probing
)

// retryBudget is gRPC's retry throttling: every failed attempt spends a
// token, every success earns back ratio of one, and retries are allowed
// only while more than half the tokens are left. During an outage retries
// stop after a few failures; they resume as successes come back.
type retryBudget struct {
	mu     sync.Mutex
	tokens float64
	max    float64
	ratio  float64
}

func newRetryBudget() *retryBudget { return &retryBudget{tokens: 10, max: 10, ratio: 0.1} }

func (b *retryBudget) success() {
	b.mu.Lock()
	b.tokens = min(b.max, b.tokens+b.ratio)
	b.mu.Unlock()
}

// failure records a failed attempt and reports whether a retry is allowed.
func (b *retryBudget) failure() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tokens = max(0, b.tokens-1)
	return b.tokens > b.max/2
}

// breakerSettings tunes the circuit breaker. The zero value means the
// production settings; tests shorten openFor or change when it trips.
type breakerSettings struct {
	// openFor is how long the breaker stays open before it lets one probe
	// through; breakerOpen by default.
	openFor time.Duration
	// trip decides, from the counts of the current window, when the
	// breaker opens; tripBreaker by default.
	trip func(gobreaker.Counts) bool
}

// tripBreaker opens the breaker after five failures in a row, or when at
// least half of twenty or more attempts in the window failed.
func tripBreaker(c gobreaker.Counts) bool {
	return c.ConsecutiveFailures >= 5 ||
		(c.Requests >= 20 && float64(c.TotalFailures) >= 0.5*float64(c.Requests))
}

// breaker is the upstream circuit breaker. Failures are attempts that
// found the upstream sick: no answer, a timeout, a 5xx or an unreadable
// answer. A 404, a 400, a rejected key or an upstream 429 is an answer
// from a working upstream and counts as a success.
type breaker struct {
	cb      *gobreaker.CircuitBreaker[upstreamAnswer]
	openFor time.Duration
	// openUntil is when the current open state ends, in Unix nanoseconds.
	openUntil atomic.Int64
}

// newBreaker builds the breaker; each change of state is logged and set
// in the circuit breaker state gauge.
func newBreaker(s breakerSettings, m *metrics.Metrics, log *slog.Logger) *breaker {
	if s.openFor <= 0 {
		s.openFor = breakerOpen
	}
	if s.trip == nil {
		s.trip = tripBreaker
	}
	b := &breaker{openFor: s.openFor}
	b.cb = gobreaker.NewCircuitBreaker[upstreamAnswer](gobreaker.Settings{
		Name:        "bluetape",
		MaxRequests: 1,
		Interval:    breakerWindow,
		Timeout:     s.openFor,
		ReadyToTrip: s.trip,
		IsSuccessful: func(err error) bool {
			var ue *upstreamError
			return err == nil || !errors.As(err, &ue) || !ue.failure
		},
		// Called with the breaker's lock held: it must not call b.cb.
		OnStateChange: func(_ string, _, to gobreaker.State) {
			m.BreakerState(breakerStateValue(to))
			if to == gobreaker.StateOpen {
				b.openUntil.Store(time.Now().Add(s.openFor).UnixNano())
				// gobreaker moves to half-open only when asked; asking
				// once the open time is over keeps the gauge true when
				// no request comes.
				time.AfterFunc(s.openFor+time.Millisecond, func() { b.cb.State() })
			}
			log.Warn("upstream circuit breaker changed state", "state", to.String())
		},
	})
	return b
}

// execute runs one attempt through the breaker. When the breaker refuses
// it, the error is a 503 whose Retry-After is the time left before the
// breaker lets a probe through.
func (b *breaker) execute(attempt func() (upstreamAnswer, error)) (upstreamAnswer, error) {
	answer, err := b.cb.Execute(attempt)
	switch {
	case errors.Is(err, gobreaker.ErrOpenState):
		return upstreamAnswer{}, breakerError(time.Until(time.Unix(0, b.openUntil.Load())))
	case errors.Is(err, gobreaker.ErrTooManyRequests):
		// Half-open, and the one probe is under way.
		return upstreamAnswer{}, breakerError(time.Second)
	}
	return answer, err
}

// breakerStateValue is the metric value of a breaker state.
func breakerStateValue(s gobreaker.State) int {
	switch s {
	case gobreaker.StateHalfOpen:
		return 1
	case gobreaker.StateOpen:
		return 2
	default:
		return 0
	}
}

// errBreakerOpen is the cause of every answer the breaker refuses.
var errBreakerOpen = errors.New("circuit breaker open")

func breakerError(retryAfter time.Duration) *upstreamError {
	return &upstreamError{status: http.StatusServiceUnavailable,
		reason:     "The upstream is failing; the gateway is holding requests back. Retry later.",
		retryAfter: max(retryAfter, time.Second), cause: errBreakerOpen}
}

// fetch gets id from upstream: within the gateway-wide quota, through the
// circuit breaker, retrying connection errors and 502/503/504 with
// jittered exponential backoff while the retry budget and ctx's deadline
// allow. Every attempt is counted in the upstream metrics, every retry
// sent in the retries counter. When a retry cannot be sent, the answer is
// the last attempt's failure.
func (g *Gateway) fetch(ctx context.Context, id, requestID string) (upstreamAnswer, error) {
	var last error
	for attempt := 1; ; attempt++ {
		if err := g.waitQuota(ctx); err != nil {
			if last != nil {
				return upstreamAnswer{}, last
			}
			return upstreamAnswer{}, err
		}
		answer, err := g.breaker.execute(func() (upstreamAnswer, error) {
			if attempt > 1 {
				g.metrics.Retry()
			}
			return g.attempt(ctx, id, requestID)
		})
		if err == nil {
			g.retries.success()
			return answer, nil
		}
		var ue *upstreamError
		if !errors.As(err, &ue) || !ue.retryable {
			return upstreamAnswer{}, err
		}
		last = err
		if !g.retries.failure() || attempt == maxAttempts {
			return upstreamAnswer{}, err
		}
		// A retry needs its backoff plus a useful part of an attempt
		// before ctx's deadline.
		wait := backoff(attempt)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait+g.timeout/4 {
			return upstreamAnswer{}, err
		}
		if sleep(ctx, wait) != nil {
			return upstreamAnswer{}, err
		}
	}
}

// attempt is one upstream exchange bounded by the per-attempt timeout and
// by ctx's deadline, whichever comes first.
func (g *Gateway) attempt(ctx context.Context, id, requestID string) (upstreamAnswer, error) {
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	start := time.Now()
	answer, outcome, err := g.exchange(ctx, id, requestID)
	g.metrics.Upstream(outcome, time.Since(start), requestID)
	return answer, err
}

// backoff is full-jitter exponential backoff: uniform in [0, base·2^(n-1)],
// capped.
func backoff(attempt int) time.Duration {
	d := min(backoffCap, backoffBase<<(attempt-1))
	return time.Duration(rand.Int64N(int64(d) + 1))
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// quotaKey is the upstream quota's bucket; no caller name or address
// can take this form.
const quotaKey = "\x00upstream"

// quotaPolicy is the upstream quota: perSecond, with a burst of one
// second's worth. Zero means no quota.
func quotaPolicy(perSecond float64) ratelimit.Policy {
	return ratelimit.Policy{Rate: perSecond, Burst: max(1, int(perSecond))}
}

// waitQuota takes one token of the gateway-wide upstream quota, waiting
// when the wait is short and fits ctx's deadline, else refusing with 503.
// Other requests may take the token it waited for, so it asks again; its
// waits add up to quotaMaxWait at most.
func (g *Gateway) waitQuota(ctx context.Context) error {
	if g.quotaPolicy.Unlimited() {
		return nil
	}
	var waited time.Duration
	for {
		d := g.quota.Allow(ctx, quotaKey, g.quotaPolicy)
		if d.Allowed {
			return nil
		}
		wait := max(d.RetryAfter, time.Millisecond)
		if dl, ok := ctx.Deadline(); waited+wait > quotaMaxWait || (ok && time.Until(dl) < wait+g.timeout/4) {
			return quotaError(wait)
		}
		if err := sleep(ctx, wait); err != nil {
			return err
		}
		waited += wait
	}
}

func quotaError(d time.Duration) error {
	return &upstreamError{status: http.StatusServiceUnavailable,
		reason:     "The gateway's upstream quota is exhausted; retry later.",
		retryAfter: d, cause: errors.New("upstream quota exhausted")}
}
