package proxy

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime/metrics"
	"strconv"
	"testing"
	"time"

	"github.com/bluetape/bluetape-gateway/proxy/callers"
	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
	"github.com/bluetape/bluetape-gateway/proxy/identity/identitytest"
	"github.com/bluetape/bluetape-gateway/proxy/logging"
	"github.com/bluetape/bluetape-gateway/proxy/ratelimit"
	"github.com/bluetape/bluetape-gateway/proxy/tracing"
	"github.com/bluetape/bluetape-gateway/proxy/tracing/otlptest"
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
func BenchmarkHotPath(b *testing.B) { benchmarkHotPath(b, nil, "") }

// BenchmarkHotPathTraced is BenchmarkHotPath with tracing as production
// runs it: export configured (to a loopback port nothing listens on, which
// only sampled spans would reach), the default sampler, and the request
// not sampled: its caller's traceparent says so. Its cost over
// BenchmarkHotPath is what tracing adds to a cache hit.
func BenchmarkHotPathTraced(b *testing.B) {
	otlptest.SetEnv(b, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + gatewaytest.FreeAddr(b)})
	tr, shutdown, err := tracing.Setup(b.Context(), tracing.Options{Version: "bench", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = shutdown(ctx)
	})
	if !tr.Exporting() {
		b.Fatal("export is not configured")
	}
	benchmarkHotPath(b, tr, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
}

func benchmarkHotPath(b *testing.B, tr *tracing.Tracer, traceparent string) {
	logs := logging.New(io.Discard, slog.LevelInfo)
	b.Cleanup(func() { logs.Close() })
	tg := newTestGateway(b, func(o *testOptions) {
		o.RateLimit = ratelimit.Policy{Rate: 1e9, Burst: 100} // on, never refusing
		o.Logger = slog.New(logs)
		o.Tracer = tr
	})
	var header []string
	if traceparent != "" {
		header = []string{"Traceparent", traceparent}
	}
	if resp, _ := tg.get(b, "/customers/hot/signup", header...); resp.StatusCode != 200 {
		b.Fatalf("warming: status %d", resp.StatusCode)
	}
	h := tg.Handler()
	req := httptest.NewRequest(http.MethodGet, "/customers/hot/signup", nil)
	req.RemoteAddr = "10.1.2.3:40000"
	if traceparent != "" {
		req.Header.Set("Traceparent", traceparent)
	}
	w := &discardWriter{h: make(http.Header, 8)}
	b.ReportAllocs()
	defer reportGCShare(b)()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		clear(w.h)
		tg.Clock.Advance(time.Microsecond) // the bucket refills, as on a real clock
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

// BenchmarkHotPathAuthenticated is BenchmarkHotPath for an authenticated
// caller: a static token of the callers file, and a service-account token
// verified before (listed by subject, or without a callers file).
func BenchmarkHotPathAuthenticated(b *testing.B) {
	is := identitytest.NewIssuer(b, identitytest.RSA())
	v := newTokenVerifier(b, is)
	saToken := is.Token(b, identitytest.RSA(), "billing", "billing-api", time.Now())
	reg, err := callers.Parse([]byte(authCallersYAML(authCaller{name: "static-caller", token: staticToken}) +
		"  - name: billing-api\n    subject: system:serviceaccount:billing:billing-api\n"))
	if err != nil {
		b.Fatal(err)
	}
	withRegistry := func(o *testOptions) { o.Callers = func() *callers.Registry { return reg } }
	for _, bc := range []struct {
		name  string
		edit  func(*testOptions)
		token string
	}{
		{"static token", withRegistry, staticToken},
		{"service account, listed", func(o *testOptions) { withRegistry(o); o.Verifier = v }, saToken},
		{"service account, no callers file", func(o *testOptions) { o.Verifier = v }, saToken},
	} {
		b.Run(bc.name, func(b *testing.B) {
			logs := logging.New(io.Discard, slog.LevelInfo)
			b.Cleanup(func() { logs.Close() })
			tg := newTestGateway(b, func(o *testOptions) {
				o.RateLimit = ratelimit.Policy{Rate: 1e9, Burst: 100} // on, never refusing
				o.Logger = slog.New(logs)
				bc.edit(o)
			})
			if resp, _ := tg.get(b, "/customers/hot/signup", gatewaytest.Bearer(bc.token)...); resp.StatusCode != 200 {
				b.Fatalf("warming: status %d", resp.StatusCode)
			}
			h := tg.Handler()
			req := httptest.NewRequest(http.MethodGet, "/customers/hot/signup", nil)
			req.RemoteAddr = "10.1.2.3:40000"
			req.Header.Set("Authorization", "Bearer "+bc.token)
			w := &discardWriter{h: make(http.Header, 8)}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				tg.Clock.Advance(time.Microsecond)
				h.ServeHTTP(w, req)
			}
			if w.h.Get("X-Cache") != "HIT" {
				b.Fatalf("X-Cache %q; want HIT", w.h.Get("X-Cache"))
			}
		})
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
