package redisstore

import (
	"bytes"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bluetape/bluetape-gateway/proxy/cache"
	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
	"github.com/bluetape/bluetape-gateway/proxy/ratelimit"
	"github.com/bluetape/bluetape-gateway/proxy/redisstore/redistest"
)

// Through a Sentinel, the replicas share through the primary it names.
// The Sentinel itself holds no keys: every operation that works went to
// the primary.
func TestSentinelURL(t *testing.T) {
	primary := redistest.Start(t)
	sentinel := redistest.StartSentinel(t, primary, "mymaster")
	url := sentinel.URL() + "?master_name=mymaster"
	a := newReplica(t, url, nil, nil)
	b := newReplica(t, url, nil, nil)
	if _, ok := a.conn.cur.Load().rdb.(*redis.Client); !ok {
		t.Fatalf("client %T; want the failover *redis.Client", a.conn.cur.Load().rdb)
	}
	provesSharing(t, a, b, rawClient(t, primary.Addr))
}

// Through a Redis Cluster, the replicas share through the node that
// serves each key's slot.
func TestClusterURL(t *testing.T) {
	node := redistest.StartCluster(t)
	url := node.URL() + "?addr=" + node.Addr
	a := newReplica(t, url, nil, nil)
	b := newReplica(t, url, nil, nil)
	if _, ok := a.conn.cur.Load().rdb.(*redis.ClusterClient); !ok {
		t.Fatalf("client %T; want *redis.ClusterClient", a.conn.cur.Load().rdb)
	}
	provesSharing(t, a, b, rawClient(t, node.Addr))
}

// provesSharing shows that replicas a and b share their cache, rate
// limits, locks and evictions through the Redis that raw looks at, and
// that no operation fell back to local state.
func provesSharing(t *testing.T, a, b *replica, raw *redis.Client) {
	t.Helper()
	gatewaytest.WaitFor(t, 10*time.Second, "both replicas to listen for evictions", func() bool {
		n, err := raw.PubSubNumSub(ctx, evictChannel).Result()
		return err == nil && n[evictChannel] == 2
	})

	// The cache.
	body := []byte(`{"signUpUrl":"https://www.bluetape.com/signup?id=1"}`)
	a.Cache().SetFound(ctx, "c1", body)
	if e, state := b.Cache().Get(ctx, "c1"); state != cache.Fresh || !bytes.Equal(e.Body, body) {
		t.Errorf("cache: got %v on the other replica; want Fresh %q", state, body)
	}
	a.Cache().SetNotFound(ctx, "c2")
	if e, state := b.Cache().Get(ctx, "c2"); state != cache.Fresh || !e.Negative() {
		t.Errorf("negative entry: got %v on the other replica; want Fresh negative", state)
	}
	for _, id := range []string{"c1", "c2"} {
		if n, err := raw.Exists(ctx, cacheKey(id)).Result(); err != nil || n != 1 {
			t.Errorf("cache key of %s in Redis: %d, %v; want 1", id, n, err)
		}
	}

	// The limiter: one burst for both replicas.
	p := ratelimit.Policy{Rate: 0.01, Burst: 2}
	for i, want := range []bool{true, true, false, false} {
		r := a
		if i%2 == 1 {
			r = b
		}
		if d := r.Limiter().Allow(ctx, "billing-service", p); d.Allowed != want {
			t.Errorf("request %d: allowed=%v; want %v from the shared bucket", i, d.Allowed, want)
		}
	}
	if n, err := raw.Exists(ctx, rateKey("billing-service")).Result(); err != nil || n != 1 {
		t.Errorf("bucket key in Redis: %d, %v; want 1", n, err)
	}

	// The lock.
	unlock, err := a.Locker().TryLock(ctx, "c3", time.Minute)
	if err != nil || unlock == nil {
		t.Fatalf("TryLock: %v, %v; want the lock", unlock != nil, err)
	}
	if u, err := b.Locker().TryLock(ctx, "c3", time.Minute); u != nil || err != nil {
		t.Errorf("TryLock on the other replica: %v, %v; want held elsewhere (nil, nil)", u != nil, err)
	}
	unlock()
	if n, err := raw.Exists(ctx, lockKey("c3")).Result(); err != nil || n != 0 {
		t.Errorf("lock key after release: %d, %v; want gone", n, err)
	}
	if u, err := b.Locker().TryLock(ctx, "c3", time.Minute); u == nil || err != nil {
		t.Errorf("TryLock after release: %v, %v; want the lock", u != nil, err)
	} else {
		u()
	}

	// Evictions: the pipeline and pub/sub.
	if !a.Cache().Delete(ctx, "c1") {
		t.Error("Delete reported the id was not cached")
	}
	gatewaytest.WaitFor(t, 10*time.Second, "the other replica's first level to drop the id", func() bool {
		_, state := b.l1.Get("c1")
		return state == cache.Miss
	})
	if n, err := raw.Exists(ctx, cacheKey("c1")).Result(); err != nil || n != 0 {
		t.Errorf("cache key after Delete: %d, %v; want gone", n, err)
	}

	for name, r := range map[string]*replica{"a": a, "b": b} {
		if got := r.redisErrors(t); got != 0 {
			t.Errorf("replica %s: redis_errors_total %v; want 0\n%s", name, got, r.logs)
		}
		if r.logCount("sharing cache, rate limits and upstream calls through Redis") != 1 {
			t.Errorf("replica %s did not log that it shares through Redis:\n%s", name, r.logs)
		}
	}
}

// A Sentinel or Cluster node that accepts connections and never answers
// costs one operation timeout, then nothing until the next probe, as a
// single server does.
func TestTopologyHangingCostsOneTimeout(t *testing.T) {
	for name, query := range map[string]string{
		"sentinel": "?master_name=mymaster",
		"cluster":  "?addr=",
	} {
		t.Run(name, func(t *testing.T) {
			addr := blackhole(t)
			if name == "cluster" {
				query += addr
			}
			a := costsOneTimeout(t, "redis://"+addr+query)
			if d := a.Limiter().Allow(ctx, "k2", ratelimit.Policy{Rate: 1, Burst: 1}); !d.Allowed {
				t.Error("the local bucket refused a first request")
			}
		})
	}
}
