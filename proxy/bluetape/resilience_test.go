package bluetape

import (
	"fmt"
	"testing"
	"time"
)

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
