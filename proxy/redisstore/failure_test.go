package redisstore

import (
	"strings"
	"testing"
	"time"

	"github.com/bluetape/bluetape-gateway/proxy/cache"
	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
	"github.com/bluetape/bluetape-gateway/proxy/ratelimit"
	"github.com/bluetape/bluetape-gateway/proxy/redisstore/redistest"
)

const (
	logDown = "Redis is unreachable or slow"
	logUp   = "Redis answers again"
)

// Without Redis, every operation falls back to the replica's own state,
// and after the first failure Redis is left alone until the next probe.
func TestRedisUnreachableFallsBackToLocal(t *testing.T) {
	srv := redistest.Start(t)
	srv.Stop()
	a := newReplica(t, srv.URL(), nil, func(o *Options) { o.RetryAfter = time.Hour })

	if _, state := a.Cache().Get(ctx, "c1"); state != cache.Miss {
		t.Errorf("Get: %v; want Miss", state)
	}
	a.Cache().SetFound(ctx, "c1", answer("v"))
	e, state := a.Cache().Get(ctx, "c1")
	if state != cache.Fresh {
		t.Fatalf("Get after SetFound: %v; want Fresh from the first level", state)
	}
	if want := a.clock.Now().Add(testTTL).UnixNano(); e.FreshUntil != want {
		t.Errorf("first level fresh until %d; want the full TTL, %d", e.FreshUntil, want)
	}
	a.Cache().SetNotFound(ctx, "c2")
	if e, state := a.Cache().Get(ctx, "c2"); state != cache.Fresh || !e.Negative() {
		t.Errorf("negative entry: %v; want Fresh negative", state)
	}
	if !a.Cache().Delete(ctx, "c1") {
		t.Error("Delete: the first level's entry was not reported")
	}
	if a.logCount("evicting from Redis failed") != 1 {
		t.Errorf("no warning that the eviction did not reach Redis; logs:\n%s", a.logs)
	}

	p := ratelimit.Policy{Rate: 0.01, Burst: 2}
	for i, want := range []bool{true, true, false} {
		if d := a.Limiter().Allow(ctx, "k", p); d.Allowed != want {
			t.Errorf("Allow %d: %v; want %v from the local bucket", i, d.Allowed, want)
		}
	}
	if unlock, err := a.Locker().TryLock(ctx, "c1", time.Minute); err == nil || unlock != nil {
		t.Errorf("TryLock: %v, %v; want an error, so that the caller goes ahead alone", unlock != nil, err)
	}

	if got := a.redisErrors(t); got != 1 {
		t.Errorf("redis_errors_total %v; want 1: the circuit skips Redis after the first failure", got)
	}
	if got := a.logCount(logDown); got != 1 {
		t.Errorf("%d log lines about Redis being down; want 1\n%s", got, a.logs)
	}
}

// A Redis that accepts connections and never answers costs one operation
// timeout, then nothing until the next probe.
func TestRedisHangingCostsOneTimeout(t *testing.T) {
	addr := blackhole(t)
	costsOneTimeout(t, "redis://"+addr)
}

// When Redis comes back, a probe finds it and the replicas share again.
func TestRedisRecovers(t *testing.T) {
	srv := redistest.Start(t)
	fast := func(o *Options) { o.RetryAfter = 10 * time.Millisecond }
	a := newReplica(t, srv.URL(), nil, fast)
	b := newReplica(t, srv.URL(), nil, fast)

	srv.Stop()
	gatewaytest.WaitFor(t, 10*time.Second, "a to notice Redis is down", func() bool {
		a.Cache().Get(ctx, "c0")
		return a.redisErrors(t) >= 3 // several probes failed
	})
	if got := a.logCount(logDown); got != 1 {
		t.Errorf("%d log lines about Redis being down during one outage; want 1", got)
	}

	srv.Restart(t)
	n := 0
	gatewaytest.WaitFor(t, 10*time.Second, "an answer cached on a to be seen on b", func() bool {
		n++
		id := "c" + strings.Repeat("x", n)
		a.Cache().SetFound(ctx, id, answer("v"))
		_, state := b.Cache().Get(ctx, id)
		return state == cache.Fresh
	})
	if a.logCount(logUp) == 0 {
		t.Errorf("no log line about Redis being back:\n%s", a.logs)
	}
}

func TestNewRejectsBadURL(t *testing.T) {
	for name, url := range map[string]string{
		"scheme":   "http://127.0.0.1:6379",
		"database": "redis://:s3cret-password@127.0.0.1:6379/notadb",
		"port":     "redis://:s3cret-password@127.0.0.1:port/0",
	} {
		t.Run(name, func(t *testing.T) {
			newRejected(t, url)
		})
	}
}

// After Close, operations fall back at once instead of waiting.
func TestClosedBackendFallsBack(t *testing.T) {
	srv := redistest.Start(t)
	a := newReplica(t, srv.URL(), nil, nil)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, state := a.Cache().Get(ctx, "c1"); state != cache.Miss {
		t.Errorf("Get after Close: %v; want Miss", state)
	}
	if unlock, err := a.Locker().TryLock(ctx, "c1", time.Minute); unlock != nil || err == nil {
		t.Errorf("TryLock after Close: %v, %v; want an error", unlock != nil, err)
	}
}
