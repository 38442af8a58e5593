package redisstore_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bluetape/bluetape-gateway/metrics"
	"github.com/bluetape/bluetape-gateway/proxy"
	"github.com/bluetape/bluetape-gateway/proxy/bluetape"
	"github.com/bluetape/bluetape-gateway/proxy/cache"
	"github.com/bluetape/bluetape-gateway/proxy/ratelimit"
	"github.com/bluetape/bluetape-gateway/proxy/redisstore"
	"github.com/bluetape/bluetape-gateway/proxy/redisstore/redistest"
)

// The benchmarks measure one API request through the whole gateway
// handler, in memory mode and in Redis mode against a real redis-server on
// loopback:
//
//	go test -run '^$' -bench . -benchmem ./proxy/redisstore/

type benchMode struct {
	redis bool
	l1TTL time.Duration // Redis mode: 1ns makes every lookup read Redis
	limit bool          // per-caller rate limit on
}

var benchModes = []struct {
	name string
	mode benchMode
}{
	{"memory", benchMode{}},
	{"redis-L1", benchMode{redis: true}},
	{"redis-L2", benchMode{redis: true, l1TTL: time.Nanosecond}},
	{"memory-ratelimited", benchMode{limit: true}},
	{"redis-L1-ratelimited", benchMode{redis: true, limit: true}},
}

func benchGateway(b *testing.B, m benchMode) http.Handler {
	b.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"signUpUrl": "https://www.bluetape.com/signup?id=97bee7a043b58084"}`)
	}))
	b.Cleanup(up.Close)
	base, _ := url.Parse(up.URL + "/genericBthubService")
	co := cache.Options{TTL: 15 * time.Minute, NegativeTTL: 30 * time.Second, StaleTTL: 24 * time.Hour, MaxEntries: 1 << 20}
	l1 := cache.New(co)
	local := ratelimit.New(ratelimit.Options{})
	met, err := metrics.New(prometheus.NewRegistry(), "bench", nil)
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	uo := bluetape.Options{
		BaseURL:     base,
		Credentials: func() (string, string) { return "key", "account" },
		Timeout:     5 * time.Second,
		Metrics:     met,
		Logger:      log,
	}
	o := proxy.Options{
		Cache:   proxy.LocalCache(l1),
		Limits:  proxy.LocalLimiter(local),
		Metrics: met,
		Logger:  log,
	}
	if m.limit {
		o.RateLimit = ratelimit.Policy{Rate: 1e9, Burst: 1e9}
	}
	if m.redis {
		srv := redistest.Start(b)
		s, err := redisstore.New(context.Background(), redisstore.Options{URL: srv.URL(), L1: l1, Local: local, L1TTL: m.l1TTL,
			Timeout: time.Second, // no fallback on a busy machine
			Metrics: met, Logger: log})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		o.Cache, o.Limits, uo.Quota, o.Locker = s.Cache(), s.Limiter(), s.Limiter(), s.Locker()
	}
	if o.Upstream, err = bluetape.New(uo); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(o.Upstream.CloseIdleConnections)
	g, err := proxy.New(o)
	if err != nil {
		b.Fatal(err)
	}
	return g.Handler()
}

func serve(b *testing.B, h http.Handler, req *http.Request, wantCache string) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || rec.Header().Get("X-Cache") != wantCache {
		b.Fatalf("got %d X-Cache %q; want 200 %s", rec.Code, rec.Header().Get("X-Cache"), wantCache)
	}
}

// BenchmarkHit is a request for a cached id.
func BenchmarkHit(b *testing.B) {
	for _, bm := range benchModes {
		b.Run(bm.name, func(b *testing.B) {
			h := benchGateway(b, bm.mode)
			req := httptest.NewRequest(http.MethodGet, "/customers/hot/signup", nil)
			serve(b, h, req, "MISS")
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				serve(b, h, req, "HIT")
			}
		})
	}
}

// BenchmarkMiss is a request for an id never seen: one upstream call on
// loopback, and in Redis mode the lock and the shared write.
func BenchmarkMiss(b *testing.B) {
	for _, bm := range benchModes {
		if bm.mode.l1TTL != 0 || bm.mode.limit {
			continue
		}
		b.Run(bm.name, func(b *testing.B) {
			h := benchGateway(b, bm.mode)
			b.ReportAllocs()
			b.ResetTimer()
			i := 0
			for b.Loop() {
				i++
				serve(b, h, httptest.NewRequest(http.MethodGet, "/customers/cold"+strconv.Itoa(i)+"/signup", nil), "MISS")
			}
		})
	}
}

// BenchmarkStore is the cost of the Redis operations alone: a lookup that
// reads Redis, and one token taken from a shared bucket.
func BenchmarkStore(b *testing.B) {
	srv := redistest.Start(b)
	met, err := metrics.New(prometheus.NewRegistry(), "bench", nil)
	if err != nil {
		b.Fatal(err)
	}
	s, err := redisstore.New(context.Background(), redisstore.Options{URL: srv.URL(),
		L1: cache.New(cache.Options{TTL: time.Minute, MaxEntries: 10}), Local: ratelimit.New(ratelimit.Options{}),
		L1TTL: time.Nanosecond, Timeout: time.Second,
		Metrics: met, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	ctx := context.Background()
	s.Cache().SetFound(ctx, "hot", []byte(`{"signUpUrl": "https://www.bluetape.com/signup?id=97bee7a043b58084"}`))

	b.Run("get-L2", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, state := s.Cache().Get(ctx, "hot"); state != cache.Fresh {
				b.Fatalf("got %v", state)
			}
		}
	})
	b.Run("allow", func(b *testing.B) {
		p := ratelimit.Policy{Rate: 1e9, Burst: 1e9}
		b.ReportAllocs()
		for b.Loop() {
			if !s.Limiter().Allow(ctx, "caller", p).Allowed {
				b.Fatal("refused")
			}
		}
	})
}
