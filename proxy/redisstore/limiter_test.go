package redisstore

import (
	"testing"
	"time"

	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
	"github.com/bluetape/bluetape-gateway/proxy/ratelimit"
	"github.com/bluetape/bluetape-gateway/proxy/redisstore/redistest"
)

// A burst is shared by all replicas: taken from either, it is spent once.
func TestLimiterBurstSharedAcrossReplicas(t *testing.T) {
	a, b := twoReplicas(t)
	p := ratelimit.Policy{Rate: 0.01, Burst: 4} // one token per 100s

	for i, want := range []int{3, 2, 1, 0} {
		l := a.Limiter()
		if i%2 == 1 {
			l = b.Limiter()
		}
		d := l.Allow(ctx, "billing-service", p)
		if !d.Allowed || d.Remaining != want {
			t.Fatalf("request %d: allowed=%v remaining=%d; want allowed, remaining %d", i, d.Allowed, d.Remaining, want)
		}
		if d.Reset <= 0 || d.Reset > 400*time.Second {
			t.Errorf("request %d: Reset %v; want up to 400s", i, d.Reset)
		}
	}
	for _, r := range []*replica{a, b} {
		d := r.Limiter().Allow(ctx, "billing-service", p)
		if d.Allowed || d.Remaining != 0 {
			t.Errorf("over the burst: allowed=%v remaining=%d; want refused", d.Allowed, d.Remaining)
		}
		if d.RetryAfter < 99*time.Second || d.RetryAfter > 100*time.Second {
			t.Errorf("RetryAfter %v; want about 100s", d.RetryAfter)
		}
	}
	// Another caller has its own bucket.
	if d := b.Limiter().Allow(ctx, "search-service", p); !d.Allowed || d.Remaining != 3 {
		t.Errorf("other caller: allowed=%v remaining=%d; want allowed, 3", d.Allowed, d.Remaining)
	}
}

// A bucket refills at its rate on Redis's clock.
func TestLimiterRefills(t *testing.T) {
	srv := redistest.Start(t)
	a := newReplica(t, srv.URL(), nil, nil)
	p := ratelimit.Policy{Rate: 50, Burst: 1}
	if d := a.Limiter().Allow(ctx, "k", p); !d.Allowed {
		t.Fatal("first request refused")
	}
	d := a.Limiter().Allow(ctx, "k", p)
	if d.Allowed || d.RetryAfter <= 0 || d.RetryAfter > 20*time.Millisecond {
		t.Fatalf("second request: allowed=%v RetryAfter=%v; want refused for at most 20ms", d.Allowed, d.RetryAfter)
	}
	gatewaytest.WaitFor(t, 10*time.Second, "a token to come back", func() bool { return a.Limiter().Allow(ctx, "k", p).Allowed })
}

// Keys become hex in Redis, whatever bytes they hold, and expire once the
// bucket is full again.
func TestLimiterKeyLayout(t *testing.T) {
	srv := redistest.Start(t)
	a := newReplica(t, srv.URL(), nil, nil)
	rdb := rawClient(t, srv.Addr)
	a.Limiter().Allow(ctx, "\x00upstream", ratelimit.Policy{Rate: 10, Burst: 10})
	const key = "bluetape-gateway:v1:rate:00757073747265616d"
	ttl, err := rdb.PTTL(ctx, key).Result()
	if err != nil || ttl <= 0 || ttl > 100*time.Millisecond {
		t.Errorf("PTTL %s: %v, %v; want the time to refill one token, 100ms", key, ttl, err)
	}
}

func TestLimiterUnlimitedSkipsRedis(t *testing.T) {
	srv := redistest.Start(t)
	a := newReplica(t, srv.URL(), nil, nil)
	if d := a.Limiter().Allow(ctx, "k", ratelimit.Policy{}); !d.Allowed {
		t.Error("unlimited policy refused")
	}
	if n, _ := rawClient(t, srv.Addr).DBSize(ctx).Result(); n != 0 {
		t.Errorf("Redis holds %d keys; want none", n)
	}
}

// Regression: a rate so high that one token's interval is below the
// clock's resolution made the script set an expiry of 0, which Redis
// refuses.
func TestLimiterVeryHighRate(t *testing.T) {
	srv := redistest.Start(t)
	a := newReplica(t, srv.URL(), nil, nil)
	for range 3 {
		if d := a.Limiter().Allow(ctx, "k", ratelimit.Policy{Rate: 1e9, Burst: 1e9}); !d.Allowed {
			t.Fatal("refused")
		}
	}
	if got := a.redisErrors(t); got != 0 {
		t.Errorf("redis_errors_total %v; want 0\n%s", got, a.logs)
	}
}
