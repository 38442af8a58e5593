package proxy

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluetape/bluetape-gateway/metrics"
	"github.com/bluetape/bluetape-gateway/proxy/cache"
	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
	"github.com/bluetape/bluetape-gateway/proxy/ratelimit"
	"github.com/bluetape/bluetape-gateway/proxy/redisstore"
	"github.com/bluetape/bluetape-gateway/proxy/redisstore/redistest"
)

var (
	_ AnswerCache = (*redisstore.TwoLevelCache)(nil)
	_ Limiter     = (*redisstore.Buckets)(nil)
	_ Locker      = (*redisstore.Election)(nil)
)

// sharedGateway is one replica of a fleet sharing one Redis and one fake
// upstream.
type sharedGateway struct {
	*testGateway
	store *redisstore.Backend
	l1    *cache.Cache
}

// newSharedGateway builds a replica as main does with GATEWAY_REDIS_URL
// set, in front of up; edit may change the gateway's options.
func newSharedGateway(t *testing.T, redisURL string, up *fakeUpstream, edit func(*testOptions)) *sharedGateway {
	t.Helper()
	sg := &sharedGateway{}
	sg.testGateway = newTestGateway(t, func(o *testOptions) {
		o.Client.BaseURL = up.baseURL(t)
		sg.l1 = cache.New(testCacheOptions)
		s, err := redisstore.New(context.Background(), redisstore.Options{
			URL: redisURL, L1: sg.l1, Local: ratelimit.New(ratelimit.Options{}),
			// A generous timeout keeps a loaded test machine from
			// turning slow answers into fallbacks.
			Timeout: 5 * time.Second, RetryAfter: 20 * time.Millisecond,
			Metrics: o.Metrics, Logger: o.Logger,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		sg.store = s
		o.Cache, o.Limits, o.Client.Quota, o.Locker = s.Cache(), s.Limiter(), s.Limiter(), s.Locker()
		if edit != nil {
			edit(o)
		}
	})
	return sg
}

// sharedFleet starts a Redis and n replicas in front of one fake upstream.
func sharedFleet(t *testing.T, n int, edit func(*testOptions)) (*redistest.Server, *fakeUpstream, []*sharedGateway) {
	t.Helper()
	srv := redistest.Start(t)
	up := newFakeUpstream(t)
	gws := make([]*sharedGateway, n)
	for i := range gws {
		gws[i] = newSharedGateway(t, srv.URL(), up, edit)
	}
	return srv, up, gws
}

func TestSharedCacheMissOnOneHitOnAnother(t *testing.T) {
	_, up, gws := sharedFleet(t, 2, nil)
	a, b := gws[0], gws[1]

	// Each answer is checked to the byte: the hits give back the miss's body.
	a.wantFound(t, "c1", "MISS")
	b.wantFound(t, "c1", "HIT")
	b.wantFound(t, "c1", "HIT") // now from b's first level
	if n := up.calls.Load(); n != 1 {
		t.Errorf("upstream called %d times; want 1", n)
	}

	up.answer(http.StatusNotFound, notFoundBody)
	if resp, _ := a.get(t, "/customers/gone/signup"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("got %d; want 404", resp.StatusCode)
	}
	if resp, _ := b.get(t, "/customers/gone/signup"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("got %d; want 404", resp.StatusCode)
	}
	if n := up.calls.Load(); n != 2 {
		t.Errorf("upstream called %d times; want 2: the 404 is shared too", n)
	}
}

// A cold id asked of three replicas at once costs one upstream call: one
// replica holds the lock and calls, the others wait for its answer.
func TestSharedColdIDOneUpstreamCall(t *testing.T) {
	_, up, gws := sharedFleet(t, 3, nil)
	release := make(chan struct{})
	up.setHandler(func(w http.ResponseWriter, r *http.Request) {
		<-release
		foundAnswer(w, r)
	})

	statuses := make(chan int, len(gws))
	for _, g := range gws {
		go func() {
			status, err := getStatus(g.URL + "/customers/cold/signup")
			if err != nil {
				t.Error(err)
			}
			statuses <- status
		}()
	}
	gatewaytest.WaitFor(t, 10*time.Second, "every replica is serving the request and one reached the upstream", func() bool {
		for _, g := range gws {
			if g.InFlight() != 1 {
				return false
			}
		}
		return up.calls.Load() == 1
	})
	close(release)
	for range gws {
		if s := <-statuses; s != http.StatusOK {
			t.Errorf("got %d; want 200", s)
		}
	}
	if n := up.calls.Load(); n != 1 {
		t.Errorf("upstream called %d times; want 1", n)
	}
}

// A caller's burst is spent once across the fleet, whichever replica it
// reaches.
func TestSharedRateLimitAcrossGateways(t *testing.T) {
	const burst = 4
	_, _, gws := sharedFleet(t, 2, func(o *testOptions) {
		o.RateLimit = ratelimit.Policy{Rate: 0.01, Burst: burst}
	})
	var ok, limited int
	for i := range 2 * burst {
		resp, _ := gws[i%2].get(t, "/customers/c1/signup")
		switch resp.StatusCode {
		case http.StatusOK:
			ok++
		case http.StatusTooManyRequests:
			limited++
			if resp.Header.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
		default:
			t.Fatalf("got %d", resp.StatusCode)
		}
	}
	if ok != burst || limited != burst {
		t.Errorf("%d allowed, %d limited across two replicas; want %d and %d", ok, limited, burst, burst)
	}
}

// Redis dies under traffic: no request fails, the failures are counted,
// and when Redis comes back on the same address the replicas share again.
func TestSharedRedisOutageUnderTraffic(t *testing.T) {
	srv, up, gws := sharedFleet(t, 2, func(o *testOptions) {
		o.RateLimit = ratelimit.Policy{Rate: 1e6, Burst: 1e6}
		o.Client.RateLimit = 1e6
	})
	a, b := gws[0], gws[1]

	var served, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				g := gws[(w+i)%2]
				// Half the ids repeat (hits), half are new (misses).
				id := fmt.Sprintf("hot%d", i%5)
				if i%2 == 1 {
					id = fmt.Sprintf("w%d-%d", w, i)
				}
				status, err := getStatus(g.URL + "/customers/" + id + "/signup")
				if err != nil || status != http.StatusOK {
					failed.Add(1)
					t.Errorf("during the outage: %d, %v", status, err)
				}
				served.Add(1)
			}
		})
	}
	t.Cleanup(func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	})

	gatewaytest.WaitFor(t, 10*time.Second, "traffic flows", func() bool { return served.Load() > 50 })
	srv.Stop()
	before := served.Load()
	gatewaytest.WaitFor(t, 10*time.Second, "both replicas count Redis errors while serving", func() bool {
		return metricSum(t, a.Registry, metrics.RedisErrorsTotal) > 0 && metricSum(t, b.Registry, metrics.RedisErrorsTotal) > 0 &&
			served.Load() > before+100
	})

	srv.Restart(t)
	n := 0
	gatewaytest.WaitFor(t, 10*time.Second, "an id fetched on one replica is a hit on the other", func() bool {
		n++
		path := fmt.Sprintf("/customers/back%d/signup", n)
		if resp, _ := a.get(t, path); resp.StatusCode != http.StatusOK {
			t.Fatalf("got %d", resp.StatusCode)
		}
		resp, _ := b.get(t, path)
		return resp.StatusCode == http.StatusOK && resp.Header.Get("X-Cache") == "HIT"
	})
	close(stop)
	wg.Wait()
	if failed.Load() != 0 {
		t.Errorf("%d of %d requests failed", failed.Load(), served.Load())
	}
	if up.calls.Load() == 0 {
		t.Error("the upstream was never called")
	}
}

// A replica that took an id's lock and died leaves the lock to expire;
// a waiting replica then calls the upstream itself.
func TestSharedLockHolderDeath(t *testing.T) {
	srv, up, gws := sharedFleet(t, 1, nil)
	dead := newSharedGateway(t, srv.URL(), up, nil)
	const ttl = 300 * time.Millisecond
	unlock, err := dead.store.Locker().TryLock(context.Background(), "orphan", ttl)
	if err != nil || unlock == nil {
		t.Fatalf("taking the lock: %v, %v", unlock != nil, err)
	}
	dead.store.Close() // dies holding the lock

	start := time.Now()
	resp, body := gws[0].get(t, "/customers/orphan/signup")
	wantAnswer(t, resp, body, "orphan", "MISS")
	if d := time.Since(start); d < ttl/2 {
		t.Errorf("answered after %v; want a wait for the lock's expiry (%v)", d, ttl)
	}
	if n := up.calls.Load(); n != 1 {
		t.Errorf("upstream called %d times; want 1", n)
	}
}

// Regression: a replica that died right after taking the lock left it for
// a whole fetch budget, and the replica waiting on it had no time left to
// call the upstream itself (504).
func TestSharedLockHolderDeathLeavesTimeToFetch(t *testing.T) {
	srv := redistest.Start(t)
	up := newFakeUpstream(t)
	g := newSharedGateway(t, srv.URL(), up, func(o *testOptions) { o.Client.Timeout = 200 * time.Millisecond })
	dead := newSharedGateway(t, srv.URL(), up, nil)
	// The lock a replica with g's settings takes: its whole fetch budget.
	unlock, err := dead.store.Locker().TryLock(context.Background(), "orphan", g.upstream.Budget())
	if err != nil || unlock == nil {
		t.Fatalf("taking the lock: %v, %v", unlock != nil, err)
	}
	dead.store.Close()

	g.wantFound(t, "orphan", "MISS")
	if n := up.calls.Load(); n != 1 {
		t.Errorf("upstream called %d times; want 1", n)
	}
}

// An operator's eviction on one replica reaches the others: the next
// request anywhere is a miss, and its fresh answer is shared again.
func TestSharedEvictionReachesOtherGateway(t *testing.T) {
	_, up, gws := sharedFleet(t, 2, nil)
	a, b := gws[0], gws[1]
	a.wantFound(t, "c1", "MISS")
	b.wantFound(t, "c1", "HIT")

	dresp, _ := httpDo(t, http.MethodDelete, a.startAdmin(t)+"/cache/customers/c1", "Authorization", "Bearer "+testAdminToken)
	if dresp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %d; want 204", dresp.StatusCode)
	}
	gatewaytest.WaitFor(t, 10*time.Second, "b's first level drops the evicted id", func() bool {
		_, state := b.l1.Get("c1")
		return state == cache.Miss
	})
	b.wantFound(t, "c1", "MISS")
	a.wantFound(t, "c1", "HIT")
	if n := up.calls.Load(); n != 2 {
		t.Errorf("upstream called %d times; want 2", n)
	}
}

// A replica whose Redis is down from the start still serves.
func TestSharedRedisDownAtStart(t *testing.T) {
	srv := redistest.Start(t)
	srv.Stop()
	up := newFakeUpstream(t)
	g := newSharedGateway(t, srv.URL(), up, func(o *testOptions) {
		o.RateLimit = ratelimit.Policy{Rate: 100, Burst: 100}
	})
	for _, want := range []string{"MISS", "HIT"} {
		g.wantFound(t, "c1", want)
	}
	if metricSum(t, g.Registry, metrics.RedisErrorsTotal) == 0 {
		t.Error("redis_errors_total is 0")
	}
}
