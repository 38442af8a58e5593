package proxy

import (
	"context"
	"log/slog"
	"time"

	"github.com/labstack/echo/v4"
)

// accessLog writes one line per API request at info level.
type accessLog struct {
	log *slog.Logger
}

func newAccessLog(l *slog.Logger) *accessLog { return &accessLog{log: l} }

func (a *accessLog) write(c echo.Context, st *requestState, status int, d time.Duration, rid string, err error) {
	level := slog.LevelInfo
	if status >= 500 && status != 503 {
		level = slog.LevelWarn
	}
	if !a.log.Enabled(context.Background(), level) {
		return
	}
	route := c.Path()
	if route == "" {
		route = "unmatched"
	}
	attrs := []slog.Attr{
		slog.String("request_id", rid),
		slog.String("caller", st.caller),
		slog.String("method", c.Request().Method),
		slog.String("route", route),
		slog.Int("status", status),
		slog.Float64("duration_ms", float64(d.Microseconds())/1000),
		slog.String("cache", st.cache),
		slog.String("upstream", st.upstream),
	}
	if st.shared {
		attrs = append(attrs, slog.Bool("shared", true))
	}
	if err != nil && status >= 500 {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	a.log.LogAttrs(context.Background(), level, "request", attrs...)
}
