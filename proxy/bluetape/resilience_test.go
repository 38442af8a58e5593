package bluetape

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bluetape/bluetape-gateway/metrics"
)

// TestBreakerCycleOnAFakeClock runs the breaker through open, half-open
// and closed in a synctest bubble, where the clock gobreaker reads is the
// bubble's: an hour open passes at once, and the gauge's move to
// half-open with no request is seen exactly when the hour ends.
func TestBreakerCycleOnAFakeClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		m, err := metrics.New(reg, "test", nil)
		if err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		b := newBreaker(BreakerSettings{OpenFor: time.Hour}, m, slog.New(slog.NewTextHandler(&logs, nil)), time.Now)
		state := func() float64 {
			t.Helper()
			families, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range families {
				if f.GetName() == metrics.CircuitBreakerState {
					return f.GetMetric()[0].GetGauge().GetValue()
				}
			}
			t.Fatalf("no %s", metrics.CircuitBreakerState)
			return 0
		}
		sick := func() ([]byte, error) {
			e := failed("503", errors.New("upstream answered 503"))
			e.failure = true
			return nil, e
		}
		for range 5 {
			b.execute(sick)
		}
		if got := state(); got != 2 {
			t.Fatalf("state %v after five failures; want 2 (open)", got)
		}
		calls := 0
		probe := func() ([]byte, error) { calls++; return []byte("ok"), nil }

		time.Sleep(59 * time.Minute)
		_, err = b.execute(probe)
		if e := ErrorOf(err); e == nil || e.Status != 503 || e.RetryAfter != time.Minute || calls != 0 {
			t.Fatalf("after 59 minutes: %v, %d calls; want the open breaker's 503 with Retry-After 1m", err, calls)
		}

		time.Sleep(time.Minute + time.Millisecond)
		synctest.Wait() // the breaker's timer has fired
		if got := state(); got != 1 {
			t.Fatalf("state %v when the hour is over; want 1 (half-open) with no request", got)
		}
		if body, err := b.execute(probe); err != nil || string(body) != "ok" || calls != 1 {
			t.Fatalf("probe: %q, %v, %d calls; want it through", body, err, calls)
		}
		if got := state(); got != 0 {
			t.Errorf("state %v after a good probe; want 0 (closed)", got)
		}
	})
}

func TestBackoffIsJitteredAndCapped(t *testing.T) {
	for attempt := 1; attempt <= 8; attempt++ {
		limit := min(backoffCap, backoffBase<<(attempt-1))
		seen := map[time.Duration]bool{}
		for range 200 {
			d := backoff(attempt)
			if d < 0 || d > limit {
				t.Fatalf("backoff(%d) = %v; want within [0, %v]", attempt, d, limit)
			}
			seen[d] = true
		}
		if len(seen) < 100 {
			t.Errorf("backoff(%d) took %d distinct values in 200 draws; want jitter", attempt, len(seen))
		}
	}
}

func TestRetryBudget(t *testing.T) {
	b := newRetryBudget()
	var allowed []bool
	for range 7 {
		allowed = append(allowed, b.failure())
	}
	if want := "[true true true true false false false]"; fmt.Sprint(allowed) != want {
		t.Errorf("retries allowed %v; want %s", allowed, want)
	}
	for range 1000 {
		b.success()
	}
	if b.tokens != b.max {
		t.Errorf("tokens %v after many successes; want the cap %v", b.tokens, b.max)
	}
}
