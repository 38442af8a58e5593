package proxy

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime/metrics"
	"strconv"
	"testing"

	"github.com/bluetape/bluetape-gateway/proxy/logging"
	"github.com/bluetape/bluetape-gateway/proxy/ratelimit"
)

// discardWriter is a reusable ResponseWriter, so that the benchmark
// counts the gateway's allocations and not a recorder's.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

// BenchmarkHotPath is a cache hit through the whole handler as production
// runs it: rate limit on (with a limit too high to trigger), the buffered
// access log at info level, metrics.
func BenchmarkHotPath(b *testing.B) {
	logs := logging.New(io.Discard, slog.LevelInfo)
	b.Cleanup(func() { logs.Close() })
	tg := newTestGateway(b, func(o *testOptions) {
		o.RateLimit = ratelimit.Policy{Rate: 1e9, Burst: 1e9}
		o.Logger = slog.New(logs)
	})
	if resp, _ := tg.get(b, "/customers/hot/signup"); resp.StatusCode != 200 {
		b.Fatalf("warming: status %d", resp.StatusCode)
	}
	h := tg.Handler()
	req := httptest.NewRequest(http.MethodGet, "/customers/hot/signup", nil)
	req.RemoteAddr = "10.1.2.3:40000"
	w := &discardWriter{h: make(http.Header, 8)}
	b.ReportAllocs()
	defer reportGCShare(b)()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		clear(w.h)
		h.ServeHTTP(w, req)
	}
	if w.h.Get("X-Cache") != "HIT" {
		b.Fatalf("X-Cache %q; want HIT", w.h.Get("X-Cache"))
	}
}

// BenchmarkMiss is a request for an id never seen: the whole handler, one
// upstream call on loopback, the answer checked, encoded and cached.
func BenchmarkMiss(b *testing.B) {
	tg := newTestGateway(b, nil)
	h := tg.Handler()
	w := &discardWriter{h: make(http.Header, 8)}
	b.ReportAllocs()
	defer reportGCShare(b)()
	i := 0
	for b.Loop() {
		i++
		req := httptest.NewRequest(http.MethodGet, "/customers/cold"+strconv.Itoa(i)+"/signup", nil)
		req.RemoteAddr = "10.1.2.3:40000"
		clear(w.h)
		h.ServeHTTP(w, req)
		if w.h.Get("X-Cache") != "MISS" {
			b.Fatalf("X-Cache %q; want MISS", w.h.Get("X-Cache"))
		}
	}
}

// reportGCShare starts measuring the share of the process's CPU time the
// garbage collector takes; the function it returns reports it as gc-cpu-%.
// The runtime's CPU classes are estimates brought up to date at the end
// of each collection, so the figure means something only when several
// collections ran.
func reportGCShare(b *testing.B) func() {
	samples := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}, {Name: "/cpu/classes/total:cpu-seconds"}, {Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(samples)
	gc0, total0, cycles0 := samples[0].Value.Float64(), samples[1].Value.Float64(), samples[2].Value.Uint64()
	return func() {
		metrics.Read(samples)
		gc, total := samples[0].Value.Float64()-gc0, samples[1].Value.Float64()-total0
		if total > 0 {
			b.ReportMetric(100*gc/total, "gc-cpu-%")
		}
		b.ReportMetric(float64(samples[2].Value.Uint64()-cycles0)/float64(b.N), "gc/op")
	}
}
