package redisstore

import (
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"

	"github.com/bluetape/bluetape-gateway/metrics"
)

// circuit keeps a dead or slow Redis from costing every request an
// operation timeout. It opens on the first failed operation: for
// retryAfter, operations are skipped and callers use their local state;
// then one operation at a time probes Redis, and the first success closes
// the circuit. Going away and coming back are logged once each; each
// failed operation is counted. It is a gobreaker circuit breaker, like
// the upstream's.
type circuit struct {
	cb      *gobreaker.TwoStepCircuitBreaker[struct{}]
	metrics *metrics.Metrics
	lastErr atomic.Pointer[error] // the failure that opens the circuit, for its log line
}

// errAbandoned marks an operation whose caller went away before Redis
// answered: it says nothing about Redis, and if it was the probe, the
// next operation may probe at once.
var errAbandoned = errors.New("operation abandoned by its caller")

// errLate marks an operation that failed while Redis answered others
// that started after it: Redis is there, and the operation was late on
// this replica's side (a starved CPU, a burst of work).
var errLate = errors.New("operation late while Redis answered others")

// excluded reports whether err says nothing about Redis being away: the
// caller went away, no connection of the pool was free in time (this
// replica's own congestion), or Redis answered other operations
// meanwhile. Such an operation is not counted and leaves the circuit as
// it was.
func excluded(err error) bool {
	return errors.Is(err, errAbandoned) || errors.Is(err, errLate) ||
		errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrPoolExhausted)
}

// degraded reports whether the circuit is not closed: the replica uses
// its own state, or is probing Redis.
func (c *circuit) degraded() bool { return c.cb.State() != gobreaker.StateClosed }

// newCircuit returns a closed circuit. onDegraded is called, with the
// breaker's lock held, when the replica starts (true) or stops (false)
// using its own state instead of Redis.
func newCircuit(retryAfter time.Duration, m *metrics.Metrics, log *slog.Logger, onDegraded func(bool)) *circuit {
	c := &circuit{metrics: m}
	c.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        "redis",
		MaxRequests: 1,
		Timeout:     retryAfter,
		ReadyToTrip: func(gobreaker.Counts) bool { return true },
		IsExcluded:  excluded,
		// Called with the breaker's lock held: it must not call c.cb.
		OnStateChange: func(_ string, from, to gobreaker.State) {
			switch {
			case from == gobreaker.StateClosed && to == gobreaker.StateOpen:
				var err error
				if p := c.lastErr.Load(); p != nil {
					err = *p
				}
				log.Warn("Redis is unreachable or slow; this replica uses its own cache and rate limits until it answers again",
					"error", err, "probe_every", retryAfter.String())
			case to == gobreaker.StateClosed:
				log.Info("Redis answers again; sharing cache, rate limits and upstream calls through it")
			}
			if (from == gobreaker.StateClosed) != (to == gobreaker.StateClosed) {
				onDegraded(to != gobreaker.StateClosed)
			}
		},
	})
	return c
}

// allow reports whether an operation may go to Redis; if so, done must
// be called with its outcome: nil for an answer, errAbandoned when the
// caller went away, else the failure.
func (c *circuit) allow() (done func(error), ok bool) {
	report, err := c.cb.Allow()
	if err != nil {
		return nil, false
	}
	return func(err error) {
		if err != nil && !excluded(err) {
			c.metrics.RedisError()
			c.lastErr.Store(&err)
		}
		report(err)
	}, true
}
