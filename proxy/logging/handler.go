// Package logging is the process's log handler: slog's JSON lines,
// written through a buffer so that a request's access line costs no system
// call.
package logging

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// Handler is the gateway's log handler: slog's JSON lines, written
// through a buffer so that a request's access line costs no system call.
// A batch of lines is written when it fills up, FlushDelay after its
// first line, at once after a line at warn level or above (other than an
// access line), and by Flush and Close. Create it with New, and
// Close it before the process exits.
type Handler struct {
	slog.Handler
	out  *logBuffer
	root bool // false once attributes or groups were added
}

// FlushDelay bounds how long a log line waits in the buffer.
const FlushDelay = 100 * time.Millisecond

// batchSize is the size of one batch of log lines.
const batchSize = 64 << 10

// New returns a handler writing JSON lines of level and above
// to w. It is safe for concurrent use.
func New(w io.Writer, level slog.Leveler) *Handler {
	out := &logBuffer{w: w, buf: make([]byte, 0, batchSize), spare: make([]byte, 0, batchSize)}
	out.timer = time.AfterFunc(time.Hour, func() { _ = out.flush() })
	out.timer.Stop()
	return &Handler{
		Handler: slog.NewJSONHandler(out, &slog.HandlerOptions{Level: level}),
		out:     out,
		root:    true,
	}
}

// Handle writes r's line, and flushes at once when r is a warning or an
// error, so that these are never held back.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= slog.LevelWarn {
		if ferr := h.out.flush(); err == nil {
			err = ferr
		}
	}
	return err
}

// WithAttrs returns a handler whose lines carry attrs.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &Handler{Handler: h.Handler.WithAttrs(attrs), out: h.out}
}

// WithGroup returns a handler that puts later attributes in group name.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{Handler: h.Handler.WithGroup(name), out: h.out}
}

// Flush writes the lines buffered so far.
func (h *Handler) Flush() error { return h.out.flush() }

// Close flushes the buffer; lines logged afterwards are written at once.
func (h *Handler) Close() error {
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
		b.timer.Reset(FlushDelay)
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

// Lines appends whole, encoded lines to a Handler's buffer, bypassing
// slog. Each line must be what slog's JSON handler would write for the
// same record.
type Lines struct{ out *logBuffer }

// Write appends line. It never retains line, so a line built on the
// caller's stack stays there.
func (l *Lines) Write(line []byte) { _ = l.out.write(line) }

// Direct returns the Lines of l's handler when l writes through a Handler
// to which no attributes or groups were added; else nil.
func Direct(l *slog.Logger) *Lines {
	if h, ok := l.Handler().(*Handler); ok && h.root {
		return &Lines{out: h.out}
	}
	return nil
}
