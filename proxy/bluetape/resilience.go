package bluetape

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/bluetape/bluetape-gateway/metrics"
	"github.com/bluetape/bluetape-gateway/proxy/ratelimit"
	"github.com/bluetape/bluetape-gateway/proxy/tracing"
)

// Retry and circuit breaker tuning. Retries are for the blips of a
// healthy upstream (a reset connection, a 502 from its load balancer); the
// budget and the breaker keep them from adding load to a sick one.
const (
	// MaxAttempts is the most attempts one Fetch makes.
	MaxAttempts   = 3
	backoffBase   = 50 * time.Millisecond
	backoffCap    = time.Second
	quotaMaxWait  = time.Second // longest a request queues for the upstream quota
	breakerWindow = 10 * time.Second
	// BreakerOpenFor is how long the breaker stays open before probing,
	// by default.
	BreakerOpenFor = 5 * time.Second
)

// Fetch gets id's signup answer: within the gateway-wide quota, through
// the circuit breaker, retrying connection errors and 502/503/504 with
// jittered exponential backoff while the retry budget and ctx's deadline
// allow. Every attempt is counted in the upstream metrics, every retry
// sent in the retries counter. When a retry cannot be sent, the answer is
// the last attempt's failure. requestID, if not empty, is sent as
// X-Request-Id.
//
// At most Options.MaxInFlight calls are in progress at once; one over
// that is refused at once with a 503 and sends nothing.
//
// It returns the encoded 200 body, or an *Error (a caller that went away
// before the quota let it through gets ctx's error).
func (c *Client) Fetch(ctx context.Context, id, requestID string) ([]byte, error) {
	if c.inFlight.Add(1) > c.maxFlight {
		c.inFlight.Add(-1)
		tracing.AddEvent(ctx, tracing.EventCapacityShed)
		return nil, atCapacityError()
	}
	c.metrics.UpstreamInFlight().Inc()
	defer func() {
		c.inFlight.Add(-1)
		c.metrics.UpstreamInFlight().Dec()
	}()
	var last error
	for attempt := 1; ; attempt++ {
		if err := c.waitQuota(ctx); err != nil {
			if _, refused := err.(*Error); refused {
				tracing.AddEvent(ctx, tracing.EventQuotaRefused)
			}
			if last != nil {
				return nil, last
			}
			return nil, err
		}
		body, err := c.breaker.execute(func() ([]byte, error) {
			if attempt > 1 {
				c.metrics.Retry()
			}
			return c.attempt(ctx, id, requestID, attempt)
		})
		if errors.Is(err, errBreakerOpen) {
			tracing.AddEvent(ctx, tracing.EventBreakerOpen)
		}
		if err == nil {
			c.retries.success()
			return body, nil
		}
		if e := ErrorOf(err); e == nil || !e.retryable {
			return nil, err
		}
		last = err
		if !c.retries.failure() || attempt == MaxAttempts {
			return nil, err
		}
		// A retry needs its backoff plus a useful part of an attempt
		// before ctx's deadline.
		wait := backoff(attempt)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait+c.timeout/4 {
			return nil, err
		}
		if sleep(ctx, wait) != nil {
			return nil, err
		}
	}
}

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

// BreakerSettings tunes the circuit breaker. The zero value is the
// production tuning; tests shorten OpenFor or change when it trips.
type BreakerSettings struct {
	// OpenFor is how long the breaker stays open before it lets one
	// probe through; BreakerOpenFor by default.
	OpenFor time.Duration
	// Trip decides, from the counts of the current window, when the
	// breaker opens. By default it opens after five failures in a row, or
	// when at least half of twenty or more attempts in the window failed.
	Trip func(gobreaker.Counts) bool
}

func tripBreaker(c gobreaker.Counts) bool {
	return c.ConsecutiveFailures >= 5 ||
		(c.Requests >= 20 && float64(c.TotalFailures) >= 0.5*float64(c.Requests))
}

// breaker is the upstream circuit breaker. Failures are attempts that
// found the upstream sick: no answer, a timeout, a 5xx or an unreadable
// answer. A 404, a 400, a rejected key or an upstream 429 is an answer
// from a working upstream and counts as a success.
type breaker struct {
	cb  *gobreaker.CircuitBreaker[[]byte]
	now func() time.Time
	// openUntil is when the current open state ends, in Unix nanoseconds.
	openUntil atomic.Int64
}

// newBreaker builds the breaker; each change of state is logged and set
// in the circuit breaker state gauge.
func newBreaker(s BreakerSettings, m *metrics.Metrics, log *slog.Logger, now func() time.Time) *breaker {
	if s.OpenFor <= 0 {
		s.OpenFor = BreakerOpenFor
	}
	if s.Trip == nil {
		s.Trip = tripBreaker
	}
	b := &breaker{now: now}
	b.cb = gobreaker.NewCircuitBreaker[[]byte](gobreaker.Settings{
		Name:        "bluetape",
		MaxRequests: 1,
		Interval:    breakerWindow,
		Timeout:     s.OpenFor,
		ReadyToTrip: s.Trip,
		IsSuccessful: func(err error) bool {
			e := ErrorOf(err)
			return e == nil || !e.failure
		},
		// Called with the breaker's lock held: it must not call b.cb.
		OnStateChange: func(_ string, _, to gobreaker.State) {
			m.BreakerState(breakerStateValue(to))
			if to == gobreaker.StateOpen {
				b.openUntil.Store(now().Add(s.OpenFor).UnixNano())
				// gobreaker moves to half-open only when asked; asking
				// once the open time is over keeps the gauge true when
				// no request comes.
				time.AfterFunc(s.OpenFor+time.Millisecond, func() { b.cb.State() })
			}
			log.Warn("upstream circuit breaker changed state", "state", to.String())
		},
	})
	return b
}

// execute runs one attempt through the breaker. When the breaker refuses
// it, the error is a 503 whose Retry-After is the time left before the
// breaker lets a probe through.
func (b *breaker) execute(attempt func() ([]byte, error)) ([]byte, error) {
	body, err := b.cb.Execute(attempt)
	switch {
	case errors.Is(err, gobreaker.ErrOpenState):
		return nil, breakerError(time.Unix(0, b.openUntil.Load()).Sub(b.now()))
	case errors.Is(err, gobreaker.ErrTooManyRequests):
		// Half-open, and the one probe is under way.
		return nil, breakerError(time.Second)
	}
	return body, err
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
func (c *Client) waitQuota(ctx context.Context) error {
	if c.quotaPolicy.Unlimited() {
		return nil
	}
	var waited time.Duration
	for {
		d := c.quota.Allow(ctx, quotaKey, c.quotaPolicy)
		if d.Allowed {
			return nil
		}
		wait := max(d.RetryAfter, time.Millisecond)
		if dl, ok := ctx.Deadline(); waited+wait > quotaMaxWait || (ok && time.Until(dl) < wait+c.timeout/4) {
			return quotaError(wait)
		}
		if err := sleep(ctx, wait); err != nil {
			return err
		}
		waited += wait
	}
}
