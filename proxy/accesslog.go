package proxy

import (
	"context"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/trace"

	"github.com/bluetape/bluetape-gateway/proxy/logging"
	"github.com/bluetape/bluetape-gateway/proxy/tracing"
)

// accessLog writes one JSON line per API request: at info level, or warn
// when the gateway failed the request (a 5xx other than 503, which is
// load shedding). The line holds the request id, the trace id and the
// server span's id (whether the request was sampled or not), the caller's name, the
// method, the route ("unmatched" when none matched: never the raw path),
// the status, the duration, the cache result and the upstream outcome:
//
//	{"time":"2026-01-01T12:00:00.123456789Z","level":"INFO","msg":"request","request_id":"4bf92f3577b34da6a3ce929d0e0e4736","trace_id":"0af7651916cd43dd8448eb211c80319c","span_id":"b7ad6b7169203331","caller":"billing-service","method":"GET","route":"/customers/:id/signup","status":200,"duration_ms":0.043,"cache":"hit","upstream":""}
//
// "shared" is added when the answer came from another request's upstream
// call, and "error" on 5xx lines.
//
// When the logger's handler is a logging.Handler, lines are appended straight
// into its buffer without allocating; any other handler gets the same
// line through slog.
type accessLog struct {
	log   *slog.Logger
	out   *logging.Lines // set when log writes through a logging.Handler
	clock logClock
}

func newAccessLog(l *slog.Logger) *accessLog {
	return &accessLog{log: l, out: logging.Direct(l)}
}

// accessLogLine is the size of the stack buffer a line is built in; a
// typical line is about 250 bytes.
const accessLogLine = 512

func (a *accessLog) write(c echo.Context, st *requestState, status int, d time.Duration, rid string, tid trace.TraceID, sid trace.SpanID, ae *apiError) {
	level := slog.LevelInfo
	if status >= 500 && status != 503 {
		level = slog.LevelWarn
	}
	ctx := context.Background()
	if !a.log.Handler().Enabled(ctx, level) {
		return
	}
	// The route is the API's one route or "unmatched": whatever the
	// router does with paths it does not know, none reaches the log.
	route := "unmatched"
	if c.Path() == signupRoute {
		route = signupRoute
	}
	var errText string
	if ae != nil && status >= 500 {
		errText = ae.Error()
	}
	method := c.Request().Method
	ms := float64(d.Microseconds()) / 1000

	if a.out != nil {
		var line [accessLogLine]byte
		b := line[:0]
		b = append(b, `{"time":"`...)
		b = a.clock.appendTime(b, st.start.Add(d))
		b = append(b, `","level":"`...)
		b = append(b, level.String()...)
		b = append(b, `","msg":"request","request_id":`...)
		b = appendLogString(b, rid)
		b = append(b, `,"trace_id":"`...)
		b = tracing.AppendTraceID(b, tid)
		b = append(b, `","span_id":"`...)
		b = tracing.AppendSpanID(b, sid)
		b = append(b, `","caller":`...)
		b = appendLogString(b, st.caller)
		b = append(b, `,"method":`...)
		b = appendLogString(b, method)
		b = append(b, `,"route":`...)
		b = appendLogString(b, route)
		b = append(b, `,"status":`...)
		b = strconv.AppendInt(b, int64(status), 10)
		b = append(b, `,"duration_ms":`...)
		b = strconv.AppendFloat(b, ms, 'f', -1, 64)
		b = append(b, `,"cache":`...)
		b = appendLogString(b, st.cache)
		b = append(b, `,"upstream":`...)
		b = appendLogString(b, st.upstream)
		if st.shared {
			b = append(b, `,"shared":true`...)
		}
		if errText != "" {
			b = append(b, `,"error":`...)
			b = appendLogString(b, errText)
		}
		b = append(b, "}\n"...)
		a.out.Write(b)
		return
	}

	attrs := [...]slog.Attr{
		slog.String("request_id", rid),
		slog.String("trace_id", tid.String()),
		slog.String("span_id", sid.String()),
		slog.String("caller", st.caller),
		slog.String("method", method),
		slog.String("route", route),
		slog.Int("status", status),
		slog.Float64("duration_ms", ms),
		slog.String("cache", st.cache),
		slog.String("upstream", st.upstream),
		{}, {},
	}
	n := 10
	if st.shared {
		attrs[n] = slog.Bool("shared", true)
		n++
	}
	if errText != "" {
		attrs[n] = slog.String("error", errText)
		n++
	}
	a.log.LogAttrs(ctx, level, "request", attrs[:n]...)
}

// logClock formats a line's time as time.RFC3339Nano does, keeping the
// date and time to the second of the last line: lines of the same second
// (all of them, under load) only append the fraction. Formatting the
// whole time was about a tenth of a cache hit's CPU.
type logClock struct{ last atomic.Pointer[logSecond] }

// logSecond is one second's formatted date and time, and its zone.
type logSecond struct {
	unix int64
	loc  *time.Location
	date []byte // "2006-01-02T15:04:05"
	zone []byte // "Z" or "-07:00"
}

func (lc *logClock) appendTime(b []byte, t time.Time) []byte {
	s := lc.last.Load()
	if s == nil || s.unix != t.Unix() || s.loc != t.Location() {
		whole := t.Truncate(time.Second).AppendFormat(nil, time.RFC3339)
		n := len(whole) - len("Z")
		if whole[n] != 'Z' {
			n = len(whole) - len("-07:00")
		}
		s = &logSecond{unix: t.Unix(), loc: t.Location(), date: whole[:n:n], zone: whole[n:]}
		lc.last.Store(s)
	}
	b = append(b, s.date...)
	if ns := t.Nanosecond(); ns != 0 {
		// RFC3339Nano's ".999999999": nine digits, trailing zeros cut.
		var frac [10]byte
		frac[0] = '.'
		for i := 9; i > 0; i-- {
			frac[i] = byte('0' + ns%10)
			ns /= 10
		}
		end := 10
		for frac[end-1] == '0' {
			end--
		}
		b = append(b, frac[:end]...)
	}
	return append(b, s.zone...)
}
