package tracing

import (
	"context"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkServerSpan measures what tracing adds to a cache hit: the
// server span started and ended, and its ids appended to a log line, with
// the default sampler, export configured, and the request not sampled.
// "none" is the same loop without tracing; "sampled" is for reference
// (1% of new traces by default).
func BenchmarkServerSpan(b *testing.B) {
	for _, k := range []string{"OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER"} {
		b.Setenv(k, "")
	}
	// The exporter is configured but never reached: no span is sampled.
	b.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	tr, shutdown, err := Setup(context.Background(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = shutdown(ctx)
	})
	for _, tc := range []struct {
		name, traceparent string
		trace             bool
	}{
		{"none", "", false},
		{"not-sampled/new-trace", "", true},
		{"not-sampled/caller-trace", "00-" + callerTrace + "-" + callerSpan + "-00", true},
		{"sampled/caller-trace", callerParent, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			r := httptest.NewRequest(http.MethodGet, "/customers/cust-42/signup", nil)
			if tc.traceparent != "" {
				r.Header.Set("Traceparent", tc.traceparent)
			}
			var line [128]byte
			ctx := r.Context()
			b.ReportAllocs()
			for b.Loop() {
				buf := line[:0]
				if !tc.trace {
					buf = append(buf, `"trace_id":"","span_id":""`...)
					continue
				}
				sctx, span := tr.StartServer(ctx, r)
				tid, sid, _ := IDs(sctx)
				buf = append(buf, `"trace_id":"`...)
				buf = hex.AppendEncode(buf, tid[:])
				buf = append(buf, `","span_id":"`...)
				buf = hex.AppendEncode(buf, sid[:])
				buf = append(buf, '"')
				EndServer(span, ServerResult{Status: 200, Caller: "billing-service", Cache: "hit"})
			}
			_ = line
		})
	}
}
