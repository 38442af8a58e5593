package shared

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluetape/bluetape-gateway/metrics"
)

// circuit keeps a dead or slow Redis from costing every request an
// operation timeout. It opens on the first failed operation: for
// retryAfter, operations are skipped and callers use their local state;
// then one operation at a time probes Redis, and the first success closes
// the circuit. Each change of state is logged once; each failed operation
// is counted.
type circuit struct {
	retryAfter time.Duration
	metrics    *metrics.Metrics
	log        *slog.Logger
	now        func() time.Time

	open    atomic.Bool
	probeAt atomic.Int64 // Unix nanos from which one operation may probe
	mu      sync.Mutex   // orders state changes and their log lines
}

func newCircuit(retryAfter time.Duration, m *metrics.Metrics, log *slog.Logger) *circuit {
	return &circuit{retryAfter: retryAfter, metrics: m, log: log, now: time.Now}
}

// allow reports whether an operation may go to Redis. While the circuit
// is open, one caller per retryAfter is let through as the probe.
func (c *circuit) allow() bool {
	if !c.open.Load() {
		return true
	}
	at := c.probeAt.Load()
	now := c.now().UnixNano()
	return now >= at && c.probeAt.CompareAndSwap(at, now+int64(c.retryAfter))
}

// success records an answer from Redis, closing the circuit.
func (c *circuit) success() {
	if !c.open.Load() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open.Load() {
		c.open.Store(false)
		c.log.Info("Redis answers again; sharing cache, rate limits and upstream calls through it")
	}
}

// failure records a failed operation, opening the circuit.
func (c *circuit) failure(err error) {
	c.metrics.RedisError()
	c.probeAt.Store(c.now().Add(c.retryAfter).UnixNano())
	if c.open.Load() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.open.Load() {
		c.open.Store(true)
		c.log.Warn("Redis is unreachable or slow; this replica uses its own cache and rate limits until it answers again",
			"error", err, "probe_every", c.retryAfter.String())
	}
}

// abandon records an operation whose caller went away before Redis
// answered: if it was the probe, the next operation may probe at once.
func (c *circuit) abandon() {
	if c.open.Load() {
		c.probeAt.Store(0)
	}
}
