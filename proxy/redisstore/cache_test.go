package redisstore

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/bluetape/bluetape-gateway/proxy/cache"
	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
	"github.com/bluetape/bluetape-gateway/proxy/redisstore/redistest"
)

var ctx = context.Background()

func TestCacheSharedBetweenReplicas(t *testing.T) {
	srv := redistest.Start(t)
	clock := newTestClock()
	a := newReplica(t, srv.URL(), clock, nil)
	b := newReplica(t, srv.URL(), clock, nil)
	body := []byte(`{"signUpUrl":"https://www.bluetape.com/signup?id=1"}`)

	a.Cache().SetFound(ctx, "c1", body)
	e, state := b.Cache().Get(ctx, "c1")
	if state != cache.Fresh || !bytes.Equal(e.Body, body) {
		t.Fatalf("got %v %q on the other replica; want Fresh %q", state, e.Body, body)
	}
	if want := clock.Now().Add(testTTL).UnixNano(); e.FreshUntil != want {
		t.Errorf("FreshUntil %d; want the writer's %d", e.FreshUntil, want)
	}
	if _, state := b.l1.Get("c1"); state != cache.Fresh {
		t.Errorf("first level after a Redis hit: %v; want Fresh", state)
	}

	a.Cache().SetNotFound(ctx, "c2")
	if e, state := b.Cache().Get(ctx, "c2"); state != cache.Fresh || !e.Negative() {
		t.Errorf("negative entry on the other replica: %v negative=%v; want Fresh negative", state, e != nil && e.Negative())
	}
	if _, state := b.Cache().Get(ctx, "c3"); state != cache.Miss {
		t.Errorf("unknown id: %v; want Miss", state)
	}
}

// The first level serves an entry read from Redis for what is left of its
// freshness, at most L1TTL; after that it asks Redis again.
func TestCacheFirstLevelFreshnessIsBounded(t *testing.T) {
	srv := redistest.Start(t)
	clock := newTestClock()
	a := newReplica(t, srv.URL(), clock, nil)
	b := newReplica(t, srv.URL(), clock, func(o *Options) { o.L1TTL = time.Minute })
	a.Cache().SetFound(ctx, "c1", answer("v1"))
	written := clock.Now()

	clock.Advance(testTTL - 30*time.Second) // 30s of freshness left
	if _, state := b.Cache().Get(ctx, "c1"); state != cache.Fresh {
		t.Fatalf("got %v; want Fresh", state)
	}
	e, _ := b.l1.Get("c1")
	if want := written.Add(testTTL).UnixNano(); e.FreshUntil != want {
		t.Errorf("first level fresh until %d; want what is left of the entry's freshness, %d", e.FreshUntil, want)
	}

	// A newer answer written by a, seen by b once its L1TTL is over.
	b.Cache().SetFound(ctx, "c4", answer("old"))
	a.Cache().SetFound(ctx, "c4", answer("new"))
	if e, _ := b.Cache().Get(ctx, "c4"); string(e.Body) != string(answer("old")) {
		t.Fatalf("within L1TTL: got %s; want the first level's copy", e.Body)
	}
	clock.Advance(time.Minute)
	if e, state := b.Cache().Get(ctx, "c4"); state != cache.Fresh || string(e.Body) != string(answer("new")) {
		t.Errorf("after L1TTL: got %v %s; want Fresh \"new\" from Redis", state, e.Body)
	}
}

func TestCacheStaleWindowFromRedis(t *testing.T) {
	srv := redistest.Start(t)
	clock := newTestClock()
	a := newReplica(t, srv.URL(), clock, nil)
	b := newReplica(t, srv.URL(), clock, nil)
	a.Cache().SetFound(ctx, "c1", answer("v"))
	clock.Advance(testTTL + time.Minute)
	if _, state := b.Cache().Get(ctx, "c1"); state != cache.Stale {
		t.Errorf("after TTL: got %v; want Stale", state)
	}
	if _, state := b.l1.Get("c1"); state != cache.Stale {
		t.Errorf("first level after a stale Redis hit: %v; want Stale", state)
	}
	clock.Advance(testStale)
	if _, state := b.Cache().Get(ctx, "c1"); state != cache.Miss {
		t.Errorf("after the stale window: got %v; want Miss", state)
	}
}

func TestCacheKeyLayoutAndExpiry(t *testing.T) {
	srv := redistest.Start(t)
	a := newReplica(t, srv.URL(), nil, nil)
	rdb := rawClient(t, srv.Addr)
	a.Cache().SetFound(ctx, "c1", answer("v"))
	a.Cache().SetNotFound(ctx, "c2")

	cases := map[string]struct {
		key  string
		kind byte
		ttl  time.Duration
	}{
		"found":     {"bluetape-gateway:v1:cache:c1", 'F', testTTL + testStale},
		"not found": {"bluetape-gateway:v1:cache:c2", 'N', testNegative},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			raw, err := rdb.Get(ctx, tc.key).Bytes()
			if err != nil {
				t.Fatalf("GET %s: %v", tc.key, err)
			}
			if raw[0] != entryVersion || raw[1] != tc.kind {
				t.Errorf("value starts %q; want version 1, kind %q", raw[:2], tc.kind)
			}
			ttl, err := rdb.PTTL(ctx, tc.key).Result()
			if err != nil || ttl > tc.ttl || ttl < tc.ttl-time.Minute {
				t.Errorf("PTTL %v, %v; want about %v", ttl, err, tc.ttl)
			}
		})
	}
}

// Values this version cannot read, such as a future version's, are misses.
func TestCacheUndecodableIsMiss(t *testing.T) {
	srv := redistest.Start(t)
	a := newReplica(t, srv.URL(), nil, nil)
	rdb := rawClient(t, srv.Addr)
	for name, v := range map[string]string{
		"empty":         "",
		"short":         "\x01F\x00",
		"next version":  "\x02F\x00\x00\x00\x00\x00\x00\x00\x01{}",
		"unknown kind":  "\x01X\x7f\x00\x00\x00\x00\x00\x00\x00{}",
		"found no body": "\x01F\x7f\x00\x00\x00\x00\x00\x00\x00",
		"404 with body": "\x01N\x7f\x00\x00\x00\x00\x00\x00\x00{}",
		"plain json":    `{"signUpUrl":"x"}`,
	} {
		t.Run(name, func(t *testing.T) {
			if err := rdb.Set(ctx, cacheKey("bad"), v, time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
			if _, state := a.Cache().Get(ctx, "bad"); state != cache.Miss {
				t.Errorf("got %v; want Miss", state)
			}
		})
	}
}

func TestEntryEncodingRoundTrip(t *testing.T) {
	for name, e := range map[string]cache.Entry{
		"found":     {Body: []byte(`{"signUpUrl":"https://www.bluetape.com/signup?id=1"}`), FreshUntil: 1_800_000_000_123_456_789},
		"not found": {FreshUntil: 42},
	} {
		t.Run(name, func(t *testing.T) {
			got, ok := decodeEntry(encodeEntry(e))
			if !ok || !bytes.Equal(got.Body, e.Body) || got.Negative() != e.Negative() || got.FreshUntil != e.FreshUntil {
				t.Errorf("got %+v, %v; want %+v", got, ok, e)
			}
		})
	}
}

func FuzzDecodeEntry(f *testing.F) {
	f.Add(encodeEntry(cache.Entry{Body: []byte(`{}`), FreshUntil: 1}))
	f.Add(encodeEntry(cache.Entry{FreshUntil: 1}))
	f.Add([]byte("\x02"))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, ok := decodeEntry(b)
		if !ok {
			return
		}
		if again := encodeEntry(e); !bytes.Equal(again, b) {
			t.Errorf("decoded %q, encoded back as %q", b, again)
		}
	})
}

// An operator's eviction on one replica clears Redis and every replica's
// first level; the next lookup anywhere is a miss.
func TestCacheDeleteEvictsEverywhere(t *testing.T) {
	srv := redistest.Start(t)
	a := newReplica(t, srv.URL(), nil, nil)
	b := newReplica(t, srv.URL(), nil, nil)
	rdb := rawClient(t, srv.Addr)
	gatewaytest.WaitFor(t, 10*time.Second, "both replicas to listen for evictions", func() bool {
		n, err := rdb.PubSubNumSub(ctx, evictChannel).Result()
		return err == nil && n[evictChannel] == 2
	})
	a.Cache().SetFound(ctx, "c1", answer("v"))
	if _, state := b.Cache().Get(ctx, "c1"); state != cache.Fresh {
		t.Fatalf("got %v; want Fresh", state)
	}

	if !a.Cache().Delete(ctx, "c1") {
		t.Error("Delete reported the id was not cached")
	}
	gatewaytest.WaitFor(t, 10*time.Second, "the other replica's first level to drop the id", func() bool {
		_, state := b.l1.Get("c1")
		return state == cache.Miss
	})
	if _, state := b.Cache().Get(ctx, "c1"); state != cache.Miss {
		t.Errorf("after Delete: got %v; want Miss", state)
	}
	if b.Cache().Delete(ctx, "c1") {
		t.Error("deleting again reported the id as cached")
	}
}

// With negative caching off, a 404 drops the id from both levels.
func TestCacheNotFoundWithoutNegativeCaching(t *testing.T) {
	srv := redistest.Start(t)
	a := newReplica(t, srv.URL(), nil, func(o *Options) {
		o.L1 = cache.New(cache.Options{TTL: testTTL, StaleTTL: testStale, MaxEntries: 100})
	})
	a.Cache().SetFound(ctx, "c1", answer("v"))
	a.Cache().SetNotFound(ctx, "c1")
	if _, state := a.Cache().Get(ctx, "c1"); state != cache.Miss {
		t.Errorf("got %v; want Miss", state)
	}
	if n, _ := rawClient(t, srv.Addr).Exists(ctx, cacheKey("c1")).Result(); n != 0 {
		t.Error("the key is still in Redis")
	}
}
