package tracing

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/bluetape/bluetape-gateway/proxy/tracing/otlptest"
)

// BenchmarkServerSpan measures what tracing adds to a cache hit: the
// server span started and ended, and its ids appended to a log line, with
// the default sampler, export configured, and the request not sampled.
// "none" is the same loop without tracing; "sampled" is for reference
// (1% of new traces by default).
func BenchmarkServerSpan(b *testing.B) {
	// Export is configured; only the sampled case reaches the receiver.
	otlptest.SetEnv(b, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": otlptest.Start(b).HTTPEndpoint})
	tr, shutdown, err := Setup(context.Background(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = shutdown(ctx)
	})
	for _, tc := range []struct {
		name, traceparent string
		trace             bool
		sdk               bool // StartServer: the SDK's span at once
	}{
		{"none", "", false, false},
		{"not-sampled/new-trace", "", true, false},
		{"not-sampled/caller-trace", "00-" + callerTrace + "-" + callerSpan + "-00", true, false},
		{"sampled/caller-trace", callerParent, true, false},
		{"StartServer/not-sampled/new-trace", "", true, true},
		{"StartServer/not-sampled/caller-trace", "00-" + callerTrace + "-" + callerSpan + "-00", true, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			r := httptest.NewRequest(http.MethodGet, "/customers/cust-42/signup", nil)
			if tc.traceparent != "" {
				r.Header.Set("Traceparent", tc.traceparent)
			}
			var line [128]byte
			ctx := r.Context()
			start := time.Now()
			b.ReportAllocs()
			for b.Loop() {
				buf := line[:0]
				if !tc.trace {
					buf = append(buf, `"trace_id":"","span_id":""`...)
					written += len(buf)
					continue
				}
				res := ServerResult{Status: 200, Caller: "billing-service", Cache: "hit"}
				if tc.sdk {
					sctx, span := tr.StartServer(ctx, r)
					tid, sid, _ := IDs(sctx)
					buf = appendIDs(buf, tid, sid)
					written += len(buf)
					EndServer(span, res)
					continue
				}
				q := tr.Begin(r, start)
				tid, sid, _ := q.IDs()
				buf = appendIDs(buf, tid, sid)
				written += len(buf)
				q.End(res)
			}
		})
	}
}

func appendIDs(b []byte, tid trace.TraceID, sid trace.SpanID) []byte {
	b = append(b, `"trace_id":"`...)
	b = AppendTraceID(b, tid)
	b = append(b, `","span_id":"`...)
	b = AppendSpanID(b, sid)
	return append(b, '"')
}

// written keeps the benchmarks' log bytes from being optimised away.
var written int
