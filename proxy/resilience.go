package proxy

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"

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

func newBreaker(onState func(gobreaker.State)) *gobreaker.CircuitBreaker[upstreamAnswer] {
	return gobreaker.NewCircuitBreaker[upstreamAnswer](gobreaker.Settings{
		Name:        "bluetape",
		MaxRequests: 1,
		Interval:    breakerWindow,
		Timeout:     breakerOpen,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= 5 ||
				(c.Requests >= 20 && float64(c.TotalFailures) >= 0.5*float64(c.Requests))
		},
		IsSuccessful: func(err error) bool {
			var ue *upstreamError
			return err == nil || !errors.As(err, &ue) || !ue.failure
		},
		OnStateChange: func(_ string, _, to gobreaker.State) { onState(to) },
	})
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

var errBreakerOpen = &upstreamError{status: http.StatusServiceUnavailable,
	reason:  "The upstream is failing; the gateway is holding requests back. Retry later.",
	outcome: "", retryAfter: breakerOpen, cause: errors.New("circuit breaker open")}

// fetch gets id from upstream: within the gateway-wide quota, through the
// circuit breaker, retrying connection errors and 502/503/504 with
// jittered exponential backoff while the retry budget and ctx's deadline
// allow. Every attempt is counted in the upstream metrics.
func (g *Gateway) fetch(ctx context.Context, id, requestID string) (upstreamAnswer, error) {
	for attempt := 1; ; attempt++ {
		if err := g.waitQuota(ctx); err != nil {
			return upstreamAnswer{}, err
		}
		answer, err := g.breaker.Execute(func() (upstreamAnswer, error) {
			return g.attempt(ctx, id, requestID)
		})
		if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
			return upstreamAnswer{}, errBreakerOpen
		}
		if err == nil {
			g.retries.success()
			return answer, nil
		}
		var ue *upstreamError
		if !errors.As(err, &ue) || !ue.retryable || attempt == maxAttempts || !g.retries.failure() {
			return upstreamAnswer{}, err
		}
		wait := backoff(attempt)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait+g.timeout/4 {
			return upstreamAnswer{}, err
		}
		if sleep(ctx, wait) != nil {
			return upstreamAnswer{}, err
		}
		g.metrics.Retry()
	}
}

// attempt is one upstream exchange bounded by the per-attempt timeout.
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
func (g *Gateway) waitQuota(ctx context.Context) error {
	if g.quotaPolicy.Unlimited() {
		return nil
	}
	for {
		d := g.quota.Allow(ctx, quotaKey, g.quotaPolicy)
		if d.Allowed {
			return nil
		}
		wait := max(d.RetryAfter, time.Millisecond)
		if dl, ok := ctx.Deadline(); wait > quotaMaxWait || (ok && time.Until(dl) < wait+g.timeout/4) {
			return quotaError(wait)
		}
		if err := sleep(ctx, wait); err != nil {
			return err
		}
	}
}

func quotaError(d time.Duration) error {
	return &upstreamError{status: http.StatusServiceUnavailable,
		reason:     "The gateway's upstream quota is exhausted; retry later.",
		retryAfter: d, cause: errors.New("upstream quota exhausted")}
}
