package proxy

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/bluetape/bluetape-gateway/proxy/logging"
)

// BenchmarkAccessLogLibraries writes the same access line as the gateway
// (the fields of a cache hit) through the hand-built encoder, through
// go.uber.org/zap (JSON core, buffered write syncer) and through
// github.com/rs/zerolog, each to io.Discard, so that the choice of the
// hand-built line stays checkable (docs/architecture.md).
func BenchmarkAccessLogLibraries(b *testing.B) {
	const rid = "4bf92f3577b34da6a3ce929d0e0e4736"
	tid := trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	sid := trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}
	d := 42 * time.Microsecond

	b.Run("hand-built", func(b *testing.B) {
		h := logging.New(io.Discard, slog.LevelInfo)
		b.Cleanup(func() { h.Close() })
		a := newAccessLog(slog.New(h))
		c := echo.New().NewContext(httptest.NewRequest(http.MethodGet, "/customers/abc/signup", nil), httptest.NewRecorder())
		c.SetPath(signupRoute)
		st := &requestState{start: time.Now(), caller: "billing-service", cache: "hit"}
		b.ReportAllocs()
		for b.Loop() {
			a.write(c, st, http.StatusOK, d, rid, tid, sid, nil)
		}
	})

	b.Run("zap", func(b *testing.B) {
		enc := zap.NewProductionEncoderConfig()
		enc.TimeKey, enc.EncodeTime = "time", zapcore.RFC3339NanoTimeEncoder
		enc.LevelKey, enc.EncodeLevel = "level", zapcore.CapitalLevelEncoder
		enc.MessageKey, enc.CallerKey, enc.StacktraceKey = "msg", "", ""
		ws := &zapcore.BufferedWriteSyncer{WS: zapcore.AddSync(io.Discard), Size: 64 << 10, FlushInterval: 100 * time.Millisecond}
		b.Cleanup(func() { ws.Stop() })
		log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(enc), ws, zapcore.InfoLevel))
		b.ReportAllocs()
		for b.Loop() {
			log.Info("request",
				zap.String("request_id", rid), zap.Stringer("trace_id", tid), zap.Stringer("span_id", sid),
				zap.String("caller", "billing-service"), zap.String("method", http.MethodGet),
				zap.String("route", signupRoute), zap.Int("status", http.StatusOK),
				zap.Float64("duration_ms", float64(d.Microseconds())/1000),
				zap.String("cache", "hit"), zap.String("upstream", ""))
		}
	})

	b.Run("zerolog", func(b *testing.B) {
		zerolog.TimeFieldFormat = time.RFC3339Nano
		log := zerolog.New(io.Discard).With().Timestamp().Logger()
		b.ReportAllocs()
		for b.Loop() {
			log.Info().
				Str("request_id", rid).Hex("trace_id", tid[:]).Hex("span_id", sid[:]).
				Str("caller", "billing-service").Str("method", http.MethodGet).
				Str("route", signupRoute).Int("status", http.StatusOK).
				Float64("duration_ms", float64(d.Microseconds())/1000).
				Str("cache", "hit").Str("upstream", "").
				Msg("request")
		}
	})
}
