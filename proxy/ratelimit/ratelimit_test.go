package ratelimit

import (
	"math"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
)

// TestAccuracy offers requests at twice the rate for a few seconds of the
// injected clock: the store admits the burst plus rate × time, to within
// one request.
func TestAccuracy(t *testing.T) {
	cases := map[string]struct {
		policy   Policy
		duration time.Duration
	}{
		"default 50/s burst 100": {Policy{Rate: 50, Burst: 100}, 4 * time.Second},
		"100/s burst 10":         {Policy{Rate: 100, Burst: 10}, 5 * time.Second},
		"0.5/s burst 1":          {Policy{Rate: 0.5, Burst: 1}, 200 * time.Second},
		"7.3/s burst 3":          {Policy{Rate: 7.3, Burst: 3}, 10 * time.Second},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			clk := gatewaytest.NewClock()
			s := New(Options{Now: clk.Now})
			step := time.Duration(float64(time.Second) / (2 * tc.policy.Rate))
			attempts := int(tc.duration / step)
			admitted := 0
			for i := 0; i < attempts; i++ {
				if s.Allow("k", tc.policy).Allowed {
					admitted++
				}
				clk.Advance(step)
			}
			// The last attempt is at duration-step.
			elapsed := time.Duration(attempts-1) * step
			want := float64(tc.policy.Burst) + tc.policy.Rate*elapsed.Seconds()
			if math.Abs(float64(admitted)-want) > 1 {
				t.Errorf("admitted %d of %d; want %.1f (burst + rate × time)", admitted, attempts, want)
			}
			ideal := float64(tc.policy.Burst) + tc.policy.Rate*tc.duration.Seconds()
			if math.Abs(float64(admitted)-ideal)/ideal > 0.03 {
				t.Errorf("admitted %d; want within 3%% of %.0f", admitted, ideal)
			}
		})
	}
}

func TestRetryAfterAndReset(t *testing.T) {
	clk := gatewaytest.NewClock()
	s := New(Options{Now: clk.Now})
	p := Policy{Rate: 0.2, Burst: 1}

	d := s.Allow("k", p)
	if !d.Allowed || d.Remaining != 0 || d.Reset != 5*time.Second {
		t.Fatalf("first: got %+v; want allowed, 0 remaining, reset 5s", d)
	}
	d = s.Allow("k", p)
	if d.Allowed || d.RetryAfter != 5*time.Second {
		t.Fatalf("second: got %+v; want refused, retry after 5s", d)
	}
	clk.Advance(2 * time.Second)
	d = s.Allow("k", p)
	if d.Allowed || d.RetryAfter != 3*time.Second {
		t.Fatalf("after 2s: got %+v; want refused, retry after 3s", d)
	}
	clk.Advance(3 * time.Second)
	if d = s.Allow("k", p); !d.Allowed {
		t.Fatalf("after 5s: got %+v; want allowed", d)
	}
}

func TestRemainingCountsDown(t *testing.T) {
	clk := gatewaytest.NewClock()
	s := New(Options{Now: clk.Now})
	p := Policy{Rate: 1, Burst: 3}
	for want := 2; want >= 0; want-- {
		if d := s.Allow("k", p); !d.Allowed || d.Remaining != want {
			t.Fatalf("got %+v; want allowed with %d remaining", d, want)
		}
	}
}

func TestUnlimited(t *testing.T) {
	s := New(Options{MaxKeys: 1})
	for i := 0; i < 100; i++ {
		if d := s.Allow(strconv.Itoa(i), Policy{Rate: 0, Burst: 1}); !d.Allowed {
			t.Fatalf("unlimited policy refused: %+v", d)
		}
	}
	if n := s.Len(); n != 0 {
		t.Errorf("Len %d; an unlimited policy keeps no bucket", n)
	}
}

func TestPolicyChangeKeepsTokens(t *testing.T) {
	clk := gatewaytest.NewClock()
	s := New(Options{Now: clk.Now})
	s.Allow("k", Policy{Rate: 1, Burst: 2})
	s.Allow("k", Policy{Rate: 1, Burst: 2})
	// Empty at the old policy; the new one has a larger burst but the
	// bucket does not refill at the change.
	if d := s.Allow("k", Policy{Rate: 10, Burst: 20}); d.Allowed {
		t.Fatalf("got %+v; a policy change must not refill the bucket", d)
	}
	clk.Advance(time.Second)
	if d := s.Allow("k", Policy{Rate: 10, Burst: 20}); !d.Allowed || d.Remaining != 9 {
		t.Fatalf("got %+v; want allowed with 9 remaining at the new rate", d)
	}
}

// TestBoundedUnderFlood sends 100,000 distinct keys, as a flood of client
// addresses would: the store never holds more than MaxKeys buckets, also
// when MaxKeys is smaller than the number of shards.
func TestBoundedUnderFlood(t *testing.T) {
	for _, tc := range []struct{ maxKeys, keys int }{{100, 100000}, {7, 20000}} {
		t.Run(strconv.Itoa(tc.maxKeys), func(t *testing.T) {
			clk := gatewaytest.NewClock()
			s := New(Options{MaxKeys: tc.maxKeys, Now: clk.Now})
			p := Policy{Rate: 1, Burst: 5}
			peak := 0
			for i := 0; i < tc.keys; i++ {
				s.Allow("198.51."+strconv.Itoa(i>>8)+"."+strconv.Itoa(i&255), p)
				if n := s.Len(); n > peak {
					peak = n
				}
			}
			if peak > tc.maxKeys {
				t.Errorf("held %d buckets; MaxKeys is %d", peak, tc.maxKeys)
			}
			if peak < tc.maxKeys*9/10 {
				t.Errorf("held at most %d buckets; a store of %d should fill", peak, tc.maxKeys)
			}
		})
	}
}

// TestEvictsLeastRecentlyUsed floods a store whose shards hold no more
// buckets than a full shard samples, so eviction is exactly LRU: a key in
// steady use keeps its bucket through the flood.
func TestEvictsLeastRecentlyUsed(t *testing.T) {
	clk := gatewaytest.NewClock()
	s := New(Options{MaxKeys: maxShards * evictSample, Now: clk.Now})
	p := Policy{Rate: 0.001, Burst: 1}
	if d := s.Allow("hot", p); !d.Allowed {
		t.Fatal("first request refused")
	}
	for i := 0; i < 5000; i++ {
		clk.Advance(time.Millisecond)
		s.Allow(strconv.Itoa(i), p)
		if d := s.Allow("hot", p); d.Allowed {
			t.Fatalf("after %d flood keys the key in use lost its bucket", i+1)
		}
	}
}

// TestSweep drops a bucket only when it has been idle for IdleAfter and is
// full again: dropping it then changes nothing for its key.
func TestSweep(t *testing.T) {
	clk := gatewaytest.NewClock()
	s := New(Options{IdleAfter: time.Minute, Now: clk.Now})
	fast := Policy{Rate: 1, Burst: 10}    // full again 1s after use
	slow := Policy{Rate: 0.001, Burst: 1} // full again 1000s after use
	s.Allow("fast", fast)
	s.Allow("slow", slow)

	clk.Advance(30 * time.Second)
	s.Sweep()
	if n := s.Len(); n != 2 {
		t.Fatalf("after 30s: Len %d; want 2 (not idle long enough)", n)
	}
	clk.Advance(31 * time.Second)
	s.Sweep()
	if n := s.Len(); n != 1 {
		t.Fatalf("after 61s: Len %d; want 1 (the slow bucket is not full yet)", n)
	}
	if d := s.Allow("slow", slow); d.Allowed {
		t.Fatal("the slow bucket was reset by the sweep")
	}
	clk.Advance(1001 * time.Second)
	s.Sweep()
	if n := s.Len(); n != 0 {
		t.Fatalf("after the slow bucket refilled: Len %d; want 0", n)
	}
}

// TestFullShardSweepsBeforeEvicting checks that a new key in a full
// shard drops idle, full buckets before it evicts an active one.
func TestFullShardSweepsBeforeEvicting(t *testing.T) {
	clk := gatewaytest.NewClock()
	s := New(Options{MaxKeys: 1, IdleAfter: time.Second, Now: clk.Now})
	p := Policy{Rate: 100, Burst: 1}
	s.Allow("a", p)
	clk.Advance(2 * time.Second)
	s.Allow("b", p)
	if n := s.Len(); n != 1 {
		t.Fatalf("Len %d; want 1", n)
	}
}

func TestConcurrentUse(t *testing.T) {
	s := New(Options{MaxKeys: 64, IdleAfter: time.Nanosecond})
	p := Policy{Rate: 1000, Burst: 10}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Go(func() {
			for i := 0; i < 2000; i++ {
				s.Allow(strconv.Itoa(g*10000+i%200), p)
				if i%100 == 0 {
					s.Sweep()
				}
			}
		})
	}
	wg.Wait()
	if n := s.Len(); n > 64 {
		t.Errorf("Len %d; MaxKeys is 64", n)
	}
}

func TestWindow(t *testing.T) {
	cases := map[Policy]time.Duration{
		{Rate: 50, Burst: 100}: 2 * time.Second,
		{Rate: 0.2, Burst: 1}:  5 * time.Second,
		{Rate: 3, Burst: 1}:    333334 * time.Microsecond,
		{Rate: 0, Burst: 1}:    0,
	}
	for p, want := range cases {
		if got := p.Window(); got != want {
			t.Errorf("%+v: Window %v; want %v", p, got, want)
		}
	}
}
