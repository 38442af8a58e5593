package logging

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
)

// countingWriter counts the writes it receives.
type countingWriter struct {
	gatewaytest.LogBuffer
	writes atomic.Int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes.Add(1)
	return w.LogBuffer.Write(p)
}

func TestLogHandler(t *testing.T) {
	t.Run("batches lines", func(t *testing.T) {
		w := &countingWriter{}
		h := New(w, slog.LevelInfo)
		defer h.Close()
		log := slog.New(h)
		for i := range 1000 {
			log.Info("line", "i", i)
		}
		if err := h.Flush(); err != nil {
			t.Fatal(err)
		}
		if n := len(gatewaytest.JSONLines(t, w.String())); n != 1000 {
			t.Fatalf("got %d lines; want 1000", n)
		}
		if n := w.writes.Load(); n > 100 {
			t.Errorf("1000 lines took %d writes; want them batched", n)
		}
	})
	t.Run("flushes after a delay", func(t *testing.T) {
		w := &gatewaytest.LogBuffer{}
		h := New(w, slog.LevelInfo)
		defer h.Close()
		slog.New(h).Info("waiting")
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(w.String(), `"msg":"waiting"`) {
			if time.Now().After(deadline) {
				t.Fatalf("an info line was not written within 5s (FlushDelay is %v)", FlushDelay)
			}
			time.Sleep(time.Millisecond) // polling a condition, bounded by the deadline
		}
	})
	t.Run("warnings are written at once", func(t *testing.T) {
		w := &gatewaytest.LogBuffer{}
		h := New(w, slog.LevelInfo)
		defer h.Close()
		log := slog.New(h)
		log.Info("before")
		log.Warn("now")
		lines := gatewaytest.JSONLines(t, w.String())
		if len(lines) != 2 || lines[0]["msg"] != "before" || lines[1]["msg"] != "now" {
			t.Errorf("after Warn returned, the output is %q; want both lines in order", w.String())
		}
	})
	t.Run("close flushes and then writes through", func(t *testing.T) {
		w := &gatewaytest.LogBuffer{}
		h := New(w, slog.LevelInfo)
		log := slog.New(h)
		log.Info("one")
		if err := h.Close(); err != nil {
			t.Fatal(err)
		}
		if n := len(gatewaytest.JSONLines(t, w.String())); n != 1 {
			t.Fatalf("after Close, %d lines written; want 1", n)
		}
		log.Info("two")
		if n := len(gatewaytest.JSONLines(t, w.String())); n != 2 {
			t.Errorf("a line logged after Close was not written at once")
		}
	})
	t.Run("lines larger than a batch", func(t *testing.T) {
		w := &gatewaytest.LogBuffer{}
		h := New(w, slog.LevelInfo)
		log := slog.New(h)
		big := strings.Repeat("b", 3*batchSize)
		log.Info("small", "n", 1)
		log.Info("big", "v", big)
		log.Info("small", "n", 2)
		log.Info("almost", "v", big[:batchSize-100])
		log.Info("small", "n", 3)
		h.Close()
		lines := gatewaytest.JSONLines(t, w.String())
		var msgs []string
		for _, l := range lines {
			msgs = append(msgs, fmt.Sprint(l["msg"]))
		}
		if want := []string{"small", "big", "small", "almost", "small"}; !slices.Equal(msgs, want) {
			t.Fatalf("got lines %q; want %q", msgs, want)
		}
		if lines[1]["v"] != big {
			t.Error("the big line was not written whole")
		}
	})
	t.Run("concurrent writers", func(t *testing.T) {
		w := &gatewaytest.LogBuffer{}
		h := New(w, slog.LevelInfo)
		log := slog.New(h)
		direct := Direct(log)
		if direct == nil {
			t.Fatal("Direct of a Handler's logger is nil")
		}
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 500 {
					if i%2 == 0 {
						direct.Write(fmt.Appendf(nil, `{"time":"2026-01-01T00:00:00Z","level":"INFO","msg":"request","request_id":"g%d-%d"}`+"\n", g, i))
					} else {
						log.Info("other", "g", g, "i", i, "pad", strings.Repeat("p", i*37%300))
					}
				}
			})
		}
		wg.Wait()
		h.Close()
		if n := len(gatewaytest.JSONLines(t, w.String())); n != 8*500 {
			t.Errorf("got %d lines; want %d", n, 8*500)
		}
	})
	t.Run("derived loggers share the buffer", func(t *testing.T) {
		w := &gatewaytest.LogBuffer{}
		h := New(w, slog.LevelInfo)
		root := slog.New(h)
		derived := root.With("component", "x").WithGroup("g")
		if Direct(derived) != nil {
			t.Error("Direct bypasses a derived logger's attributes")
		}
		root.Info("first")
		derived.Info("second", "k", "v")
		root.Info("third")
		h.Close()
		lines := gatewaytest.JSONLines(t, w.String())
		if len(lines) != 3 || lines[1]["component"] != "x" || lines[2]["msg"] != "third" {
			t.Errorf("got %q", w.String())
		}
	})
}
