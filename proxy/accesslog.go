package proxy

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
)

// accessLog writes one JSON line per API request: at info level, or warn
// when the gateway failed the request (a 5xx other than 503, which is
// load shedding). The line holds the request id, the caller's name, the
// method, the route ("unmatched" when none matched: never the raw path),
// the status, the duration, the cache result and the upstream outcome:
//
//	{"time":"2026-01-01T12:00:00.123456789Z","level":"INFO","msg":"request","request_id":"4bf92f3577b34da6a3ce929d0e0e4736","caller":"billing-service","method":"GET","route":"/customers/:id/signup","status":200,"duration_ms":0.043,"cache":"hit","upstream":""}
//
// "shared" is added when the answer came from another request's upstream
// call, and "error" on 5xx lines.
//
// When the logger's handler is a LogHandler, lines are appended straight
// into its buffer without allocating; any other handler gets the same
// line through slog.
type accessLog struct {
	log *slog.Logger
	out *logBuffer // set when log writes through a LogHandler
}

func newAccessLog(l *slog.Logger) *accessLog {
	a := &accessLog{log: l}
	if h, ok := l.Handler().(*LogHandler); ok && h.root {
		a.out = h.out
	}
	return a
}

// accessLogLine is the size of the stack buffer a line is built in; a
// typical line is about 250 bytes.
const accessLogLine = 512

func (a *accessLog) write(c echo.Context, st *requestState, status int, d time.Duration, rid string, ae *apiError) {
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
		b = st.start.Add(d).AppendFormat(b, time.RFC3339Nano)
		b = append(b, `","level":"`...)
		b = append(b, level.String()...)
		b = append(b, `","msg":"request","request_id":`...)
		b = appendLogString(b, rid)
		b = append(b, `,"caller":`...)
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
		a.out.write(b)
		return
	}

	attrs := [...]slog.Attr{
		slog.String("request_id", rid),
		slog.String("caller", st.caller),
		slog.String("method", method),
		slog.String("route", route),
		slog.Int("status", status),
		slog.Float64("duration_ms", ms),
		slog.String("cache", st.cache),
		slog.String("upstream", st.upstream),
		{}, {},
	}
	n := 8
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

// LogHandler is the gateway's log handler: slog's JSON lines, written
// through a buffer so that a request's access line costs no system call.
// A batch of lines is written when it fills up, LogFlushDelay after its
// first line, at once after a line at warn level or above (other than an
// access line), and by Flush and Close. Create it with NewLogHandler, and
// Close it before the process exits.
type LogHandler struct {
	slog.Handler
	out  *logBuffer
	root bool // false once attributes or groups were added
}

// LogFlushDelay bounds how long a log line waits in the buffer.
const LogFlushDelay = 100 * time.Millisecond

// logBatch is the size of one batch of log lines.
const logBatch = 64 << 10

// NewLogHandler returns a handler writing JSON lines of level and above
// to w. It is safe for concurrent use.
func NewLogHandler(w io.Writer, level slog.Leveler) *LogHandler {
	out := &logBuffer{w: w, buf: make([]byte, 0, logBatch), spare: make([]byte, 0, logBatch)}
	out.timer = time.AfterFunc(time.Hour, func() { _ = out.flush() })
	out.timer.Stop()
	return &LogHandler{
		Handler: slog.NewJSONHandler(out, &slog.HandlerOptions{Level: level}),
		out:     out,
		root:    true,
	}
}

// Handle writes r's line, and flushes at once when r is a warning or an
// error, so that these are never held back.
func (h *LogHandler) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= slog.LevelWarn {
		if ferr := h.out.flush(); err == nil {
			err = ferr
		}
	}
	return err
}

// WithAttrs returns a handler whose lines carry attrs.
func (h *LogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &LogHandler{Handler: h.Handler.WithAttrs(attrs), out: h.out}
}

// WithGroup returns a handler that puts later attributes in group name.
func (h *LogHandler) WithGroup(name string) slog.Handler {
	return &LogHandler{Handler: h.Handler.WithGroup(name), out: h.out}
}

// Flush writes the lines buffered so far.
func (h *LogHandler) Flush() error { return h.out.flush() }

// Close flushes the buffer; lines logged afterwards are written at once.
func (h *LogHandler) Close() error {
	h.out.mu.Lock()
	h.out.closed = true
	h.out.timer.Stop()
	h.out.mu.Unlock()
	return h.out.flush()
}

// logBuffer collects log lines and writes them to w in batches, in order.
// Lines are appended under mu, which is held only for a copy; batches are
// written under wmu, so a slow w delays the flusher, not the requests,
// until the next batch fills up.
type logBuffer struct {
	w      io.Writer
	wmu    sync.Mutex // held while writing to w; guards spare
	spare  []byte     // an empty batch, swapped in while the full one is written
	mu     sync.Mutex // guards buf and closed
	buf    []byte
	closed bool
	timer  *time.Timer
}

// Write implements io.Writer for slog's JSON handler.
func (b *logBuffer) Write(p []byte) (int, error) {
	return len(p), b.write(p)
}

// write appends p. It never retains p, and writes to w only through
// batches, so that a line built on the caller's stack stays there.
func (b *logBuffer) write(p []byte) error {
	b.mu.Lock()
	if !b.closed && len(b.buf)+len(p) <= cap(b.buf) {
		b.appendLocked(p)
		b.mu.Unlock()
		return nil
	}
	b.mu.Unlock()

	// The batch is full, p is larger than a batch, or the buffer is
	// closed: write batches out until p is in. Holding wmu keeps any other
	// batch from coming between p's pieces.
	b.wmu.Lock()
	defer b.wmu.Unlock()
	var err error
	for {
		b.mu.Lock()
		// p goes into the current batch if it fits, else it starts one of
		// its own, which it may overflow into the next.
		if len(b.buf) == 0 || len(b.buf)+len(p) <= cap(b.buf) {
			k := min(len(p), cap(b.buf)-len(b.buf))
			b.appendLocked(p[:k])
			p = p[k:]
			if len(p) == 0 && !b.closed {
				b.mu.Unlock()
				return err
			}
		}
		batch := b.swapLocked()
		b.mu.Unlock()
		if werr := b.writeBatch(batch); err == nil {
			err = werr
		}
		if len(p) == 0 {
			return err
		}
	}
}

func (b *logBuffer) appendLocked(p []byte) {
	if len(b.buf) == 0 && !b.closed {
		b.timer.Reset(LogFlushDelay)
	}
	b.buf = append(b.buf, p...)
}

// swapLocked takes the current batch and starts an empty one. b.wmu and
// b.mu must be held.
func (b *logBuffer) swapLocked() []byte {
	batch := b.buf
	b.buf, b.spare = b.spare[:0], nil
	return batch
}

// writeBatch writes batch and keeps its memory for the next swap. b.wmu
// must be held.
func (b *logBuffer) writeBatch(batch []byte) error {
	var err error
	if len(batch) > 0 {
		_, err = b.w.Write(batch)
	}
	b.spare = batch[:0]
	return err
}

func (b *logBuffer) flush() error {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	b.mu.Lock()
	batch := b.swapLocked()
	b.mu.Unlock()
	return b.writeBatch(batch)
}
