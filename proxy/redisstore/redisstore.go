// Package redisstore lets the gateway's replicas share their answer cache, their
// rate limits and the election of the replica that calls the upstream for a
// cold id, through Redis.
//
// Each replica keeps its in-process cache as a small first level in front
// of Redis. Redis is never needed to answer: when it is slow or
// unreachable, a replica falls back to its own cache and limits within one
// short operation timeout, skips Redis for a while, and shares again once a
// probe succeeds.
//
// Every key starts with "bluetape-gateway:v1:"; the version changes with
// any change of layout or encoding, so that replicas of different versions
// never misread each other's entries.
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/semaphore"

	"github.com/bluetape/bluetape-gateway/metrics"
	"github.com/bluetape/bluetape-gateway/proxy/cache"
	"github.com/bluetape/bluetape-gateway/proxy/ratelimit"
)

// keyPrefix starts every key and channel name the gateway uses.
const keyPrefix = "bluetape-gateway:v1:"

// Defaults of Options.
const (
	DefaultTimeout    = 100 * time.Millisecond
	DefaultRetryAfter = time.Second
	DefaultL1TTL      = 30 * time.Second
)

// Options configures a Backend.
type Options struct {
	// URL locates Redis, in the forms go-redis reads:
	//   - one server, as ParseURL reads it: redis://[user:password@]host:port[/db],
	//     rediss://... for TLS, or unix://[user:password@]/path/to/socket?db=N;
	//   - Sentinel, with a master_name query parameter, as ParseFailoverURL
	//     reads it: redis://[user:password@]sentinel:26379[/db]?master_name=NAME[&addr=sentinel2:26379...];
	//   - Cluster, with one or more addr query parameters and no
	//     master_name, as ParseClusterURL reads it:
	//     redis://[user:password@]node:6379?addr=node2:6379[&addr=...].
	// Its query options (pool_size, client_name, protocol, ...) are
	// honoured, except the timeouts and retries, which Timeout governs,
	// and the options that send commands to replicas, which are refused.
	URL string
	// L1 is the replica's own cache, the first level. Required. Its
	// windows (TTL, NegativeTTL, StaleTTL) and clock apply to Redis too.
	L1 *cache.Cache
	// Local holds the replica's own buckets, used while Redis is
	// unreachable. Required.
	Local *ratelimit.Store

	// L1TTL bounds how long the first level serves an entry without
	// looking at Redis again; it bounds how stale a replica can be after
	// an eviction it missed. By default min(L1's TTL, 30s).
	L1TTL time.Duration

	// Timeout bounds each Redis operation, connecting included. By
	// default 100ms.
	Timeout time.Duration
	// RetryAfter is how long a replica leaves Redis alone after an
	// operation failed, before one operation probes it again. By
	// default 1s.
	RetryAfter time.Duration

	// Metrics counts failed Redis operations; Logger tells when Redis
	// goes away and comes back. Both required.
	Metrics *metrics.Metrics
	Logger  *slog.Logger
	// Shared, if not nil, receives shared mode's own metrics: whether
	// the replica is degraded to local state, and the invalid entries
	// read back from Redis.
	Shared *metrics.Shared

	// Credentials, if not nil, returns the credentials in force: an
	// answer read back from Redis that holds one of them is refused, as
	// an upstream answer would be.
	Credentials func() (key, account string)
}

// Backend is the gateway's shared state in Redis. Its TwoLevelCache, Buckets
// and Election are safe for concurrent use. Create it with New; Close releases
// its connections.
type Backend struct {
	conn    *conn
	cache   *TwoLevelCache
	limiter *Buckets
	locker  *Election
	log     *slog.Logger
	ctx     context.Context // ends with Close
	stop    context.CancelFunc
	done    chan struct{}

	rotate sync.Mutex // serialises SetURL and Close
}

// New connects to Redis as o says. It fails only on an invalid URL or
// missing option: an unreachable Redis is logged, and the Backend starts in
// local mode and keeps probing. Evictions published by other replicas are
// applied to L1 until ctx is done or Close is called.
func New(ctx context.Context, o Options) (*Backend, error) {
	if o.L1 == nil || o.Local == nil || o.Metrics == nil || o.Logger == nil {
		return nil, errors.New("redisstore: L1, Local, Metrics and Logger are required")
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	tgt, err := parseURL(o.URL, o.Timeout)
	if err != nil {
		return nil, err
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = DefaultRetryAfter
	}
	if o.L1TTL <= 0 {
		o.L1TTL = min(o.L1.Options().TTL, DefaultL1TTL)
	}
	w := newWaiters()
	c := &conn{
		timeout:  o.Timeout,
		poolWait: poolWaitFactor * o.Timeout,
		epoch:    time.Now(),
	}
	c.circuit = newCircuit(o.RetryAfter, o.Metrics, o.Logger, func(degraded bool) {
		if degraded {
			// Messages may be lost until the subscription is confirmed again.
			w.subscribed.Store(false)
		}
		if o.Shared != nil {
			o.Shared.Degraded(degraded)
		}
	})
	ctx, stop := context.WithCancel(ctx)
	s := &Backend{
		conn: c,
		cache: &TwoLevelCache{conn: c, l1: o.L1, opts: o.L1.Options(), l1TTL: o.L1TTL, log: o.Logger,
			shared: o.Shared, credentials: o.Credentials},
		limiter: &Buckets{conn: c, local: o.Local},
		locker:  &Election{conn: c, waits: w},
		log:     o.Logger,
		ctx:     ctx,
		stop:    stop,
		done:    make(chan struct{}),
	}
	s.connect(tgt)
	go func() {
		defer close(s.done)
		s.probe(ctx, o.RetryAfter)
	}()
	return s, nil
}

// poolWaitFactor times the operation timeout bounds the wait for a free
// connection. That wait is this replica's own congestion, not a failure
// of Redis: it is not counted, and does not eat into the operation's
// timeout.
const poolWaitFactor = 10

// connect makes tgt's client the one every operation uses, starts its
// subscription, and pings it. The caller holds s.rotate or is New.
func (s *Backend) connect(tgt target) *client {
	cl := &client{rdb: tgt.client(), slots: semaphore.NewWeighted(int64(tgt.poolSize())), done: make(chan struct{})}
	ctx, stop := context.WithCancel(s.ctx)
	cl.stop = stop
	s.locker.waits.subscribed.Store(false)
	s.conn.cur.Store(cl)
	go func() {
		defer close(cl.done)
		s.listen(ctx, cl)
	}()
	if s.conn.do(ctx, func(ctx context.Context, rdb redis.UniversalClient) error { return rdb.Ping(ctx).Err() }) {
		s.log.Info("sharing cache, rate limits and upstream calls through Redis", "redis", tgt.String())
	}
	return cl
}

// SetURL connects to the Redis at url, which replaces the current one:
// once the new client is in use, the old one is closed, after the
// operations in flight on it have ended. An invalid url changes nothing
// and is returned as an error that does not show it.
func (s *Backend) SetURL(url string) error {
	tgt, err := parseURL(url, s.conn.timeout)
	if err != nil {
		return err
	}
	s.rotate.Lock()
	defer s.rotate.Unlock()
	if s.ctx.Err() != nil {
		return errors.New("redisstore: closed")
	}
	old := s.conn.cur.Load()
	s.connect(tgt)
	return old.close()
}

// probe pings Redis every interval while the circuit is not closed, so
// that a replica without traffic also finds Redis back, until ctx is
// done.
func (s *Backend) probe(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if s.conn.circuit.degraded() {
				s.conn.do(ctx, func(ctx context.Context, rdb redis.UniversalClient) error { return rdb.Ping(ctx).Err() })
			}
		}
	}
}

// Cache returns the two-level answer cache.
func (s *Backend) Cache() *TwoLevelCache { return s.cache }

// Limiter returns the shared token buckets, for caller limits and the
// upstream quota alike.
func (s *Backend) Limiter() *Buckets { return s.limiter }

// Locker returns the cross-replica election of upstream callers.
func (s *Backend) Locker() *Election { return s.locker }

// Close stops applying evictions and closes the connections to Redis.
func (s *Backend) Close() error {
	s.rotate.Lock()
	defer s.rotate.Unlock()
	s.stop()
	<-s.done
	return s.conn.cur.Load().close()
}

// client is one Redis client and its subscription. A new URL replaces it
// with another.
type client struct {
	rdb redis.UniversalClient
	// slots bounds the operations in flight to the client's pool size,
	// so that none of them waits for a connection inside its timeout.
	slots *semaphore.Weighted
	stop  context.CancelFunc // ends the subscription
	done  chan struct{}      // closed when the subscription has ended

	mu     sync.RWMutex // held for reading by each operation
	closed bool
}

// close ends c's subscription, waits for its operations in flight and
// closes it.
func (c *client) close() error {
	c.stop()
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return c.rdb.Close()
}

// conn is the current Redis client with its operation timeout and
// circuit. Every operation goes through do.
type conn struct {
	cur      atomic.Pointer[client]
	timeout  time.Duration
	poolWait time.Duration
	circuit  *circuit
	// lastAnswer is when Redis last answered an operation, as time
	// since epoch (monotonic).
	lastAnswer atomic.Int64
	epoch      time.Time
}

// now returns the time since c.epoch.
func (c *conn) now() int64 { return int64(time.Since(c.epoch)) }

// acquire returns the current client, held for reading: the caller
// calls its mu.RUnlock when done. It returns nil once the Backend is
// closed.
func (c *conn) acquire() *client {
	for {
		cl := c.cur.Load()
		cl.mu.RLock()
		if !cl.closed {
			return cl
		}
		cl.mu.RUnlock()
		// A new client is stored before the old one is closed: a closed
		// current client means the Backend is closed.
		if c.cur.Load() == cl {
			return nil
		}
	}
}

// do runs op on the current client within the operation timeout, unless
// the circuit says to leave Redis alone. It reports whether Redis
// answered; redis.Nil (no such key) is an answer. A failure is counted
// and opens the circuit. A caller that goes away, a wait for a free
// connection, or an operation that failed while Redis answered others,
// says nothing about Redis being away and changes nothing.
func (c *conn) do(ctx context.Context, op func(context.Context, redis.UniversalClient) error) bool {
	ok, _ := c.run(ctx, op)
	return ok
}

// run is do, and also reports whether op failed late: while Redis
// answered other operations. An idempotent operation may then be tried
// again.
func (c *conn) run(ctx context.Context, op func(context.Context, redis.UniversalClient) error) (ok, late bool) {
	cl := c.acquire()
	if cl == nil {
		return false, false
	}
	defer cl.mu.RUnlock()
	wctx, cancel := context.WithTimeout(ctx, c.poolWait)
	err := cl.slots.Acquire(wctx, 1)
	cancel()
	if err != nil {
		return false, false
	}
	defer cl.slots.Release(1)

	done, allowed := c.circuit.allow()
	if !allowed {
		return false, false
	}
	began := c.now()
	octx, cancel := context.WithTimeout(ctx, c.timeout)
	err = op(octx, cl.rdb)
	cancel()
	switch {
	case err == nil || errors.Is(err, redis.Nil):
		c.lastAnswer.Store(c.now())
		done(nil)
		return true, false
	case ctx.Err() != nil:
		done(errAbandoned)
		return false, false
	case c.lastAnswer.Load() > began:
		// Redis answered another operation meanwhile: it is there, and
		// this one was late on this replica's side (a starved CPU, say).
		done(errLate)
		return false, true
	default:
		done(err)
		return false, false
	}
}

// RouteClientLogs sends go-redis's own log lines to log at debug level.
// go-redis has one process-wide logger, so this sets it for every client
// in the process; main calls it once. The circuit already reports Redis
// trouble once per change of state.
func RouteClientLogs(log *slog.Logger) { redis.SetLogger(clientLog{log}) }

// clientLog passes go-redis's own log lines on at debug level.
type clientLog struct{ log *slog.Logger }

func (l clientLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "redis client: "+fmt.Sprintf(format, v...))
}
