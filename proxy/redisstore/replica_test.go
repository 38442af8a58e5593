package redisstore

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/bluetape/bluetape-gateway/metrics"
	"github.com/bluetape/bluetape-gateway/proxy/cache"
	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
	"github.com/bluetape/bluetape-gateway/proxy/ratelimit"
	"github.com/bluetape/bluetape-gateway/proxy/redisstore/redistest"
)

// newTestClock returns the settable clock of cache freshness the
// replicas share.
func newTestClock() *gatewaytest.Clock { return gatewaytest.NewClockAt(time.Unix(1_800_000_000, 0)) }

// replica is one gateway replica's shared state, as the gateway would
// build it.
type replica struct {
	*Backend
	l1    *cache.Cache
	clock *gatewaytest.Clock
	reg   *prometheus.Registry
	logs  *gatewaytest.LogBuffer
}

// Cache windows of the tests.
const (
	testTTL      = 15 * time.Minute
	testNegative = 30 * time.Second
	testStale    = time.Hour
	testTimeout  = 5 * time.Second
)

// twoReplicas connects two replicas to a new Redis server of their own.
func twoReplicas(t *testing.T) (a, b *replica) {
	t.Helper()
	srv := redistest.Start(t)
	return newReplica(t, srv.URL(), nil, nil), newReplica(t, srv.URL(), nil, nil)
}

// newReplica connects a replica to the Redis at url; edit may change the
// options first. The store is closed at the end of the test.
func newReplica(t *testing.T, url string, clock *gatewaytest.Clock, edit func(*Options)) *replica {
	t.Helper()
	if clock == nil {
		clock = newTestClock()
	}
	r := &replica{
		l1: cache.New(cache.Options{TTL: testTTL, NegativeTTL: testNegative, StaleTTL: testStale,
			MaxEntries: 100, Now: clock.Now}),
		clock: clock,
		reg:   prometheus.NewRegistry(),
		logs:  &gatewaytest.LogBuffer{},
	}
	m, err := metrics.New(r.reg, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	o := Options{
		URL: url, L1: r.l1, Local: ratelimit.New(ratelimit.Options{}),
		Metrics: m, Logger: slog.New(slog.NewJSONHandler(r.logs, nil)),
		// Generous, so that a loaded test machine cannot turn a slow
		// answer into a fallback; the failure tests set their own.
		Timeout: testTimeout,
	}
	if edit != nil {
		edit(&o)
	}
	r.l1 = o.L1
	s, err := New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	r.Backend = s
	return r
}

// redisErrors returns the replica's bluetape_gateway_redis_errors_total.
func (r *replica) redisErrors(t *testing.T) float64 {
	t.Helper()
	families, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == metrics.RedisErrorsTotal {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("%s not registered", metrics.RedisErrorsTotal)
	return 0
}

// logCount returns how many log lines contain s.
func (r *replica) logCount(s string) int { return strings.Count(r.logs.String(), s) }

// rawClient is a plain client for looking at what the replicas wrote.
func rawClient(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true})
	t.Cleanup(func() { c.Close() })
	return c
}

// blackhole accepts connections and never answers: a Redis that hangs.
func blackhole(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

// answer returns the gateway's encoded answer for id, as the upstream
// client writes it.
func answer(id string) []byte {
	return []byte(`{"signUpUrl":"https://www.bluetape.com/signup?id=` + id + `"}`)
}

// newRejected calls New with a URL it must refuse, and checks that the
// error does not show the URL's password, s3cret.
func newRejected(t *testing.T, url string) error {
	t.Helper()
	m, err := metrics.New(prometheus.NewRegistry(), "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(ctx, Options{URL: url, L1: cache.New(cache.Options{}), Local: ratelimit.New(ratelimit.Options{}),
		Metrics: m, Logger: slog.New(slog.DiscardHandler)})
	if err == nil {
		t.Fatal("no error")
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("the error shows the password: %v", err)
	}
	return err
}

// costsOneTimeout starts a replica on url, a Redis that accepts
// connections and never answers, and checks that it costs one operation
// timeout, then nothing until the next probe.
func costsOneTimeout(t *testing.T, url string) *replica {
	t.Helper()
	start := time.Now()
	a := newReplica(t, url, nil, func(o *Options) {
		o.Timeout = 50 * time.Millisecond
		o.RetryAfter = time.Hour
	})
	if d := time.Since(start); d > time.Second {
		t.Errorf("New took %v against a hanging Redis; want about the 50ms timeout", d)
	}
	start = time.Now()
	for range 100 {
		a.Cache().Get(ctx, "c1")
		a.Limiter().Allow(ctx, "k", ratelimit.Policy{Rate: 1, Burst: 1})
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("200 operations with the circuit open took %v; want no wait on Redis, which would cost 50ms each", d)
	}
	if got := a.redisErrors(t); got != 1 {
		t.Errorf("redis_errors_total %v; want 1", got)
	}
	return a
}
