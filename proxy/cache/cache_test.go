package cache

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
)

const (
	ttl         = 15 * time.Minute
	negativeTTL = 30 * time.Second
	staleTTL    = 24 * time.Hour
)

func newCache(t *testing.T, max int) (*Cache, *gatewaytest.Clock) {
	t.Helper()
	clk := gatewaytest.NewClock()
	c := New(Options{TTL: ttl, NegativeTTL: negativeTTL, StaleTTL: staleTTL, MaxEntries: max, Now: clk.Now})
	t.Cleanup(func() { checkInvariants(t, c) })
	return c, clk
}

// checkInvariants verifies that go-cache's map and the two eviction lists
// hold exactly the same entries, each once, in the list of its kind, with
// consistent links, and no more than MaxEntries of them.
func checkInvariants(t *testing.T, c *Cache) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := make(map[*Entry]bool)
	for _, l := range []*list{&c.negative, &c.positive} {
		n := 0
		var prev *Entry
		for e := l.head; e != nil; e = e.next {
			if e.prev != prev {
				t.Fatalf("entry %q: prev link broken", e.key())
			}
			if e.Negative() != (l == &c.negative) {
				t.Fatalf("entry %q is in the other kind's list", e.key())
			}
			if seen[e] {
				t.Fatalf("entry %q is listed twice", e.key())
			}
			seen[e] = true
			v, ok := c.items.Load().Get(e.key())
			if !ok || v.(*Entry) != e {
				t.Fatalf("listed entry %q is not the one go-cache holds", e.key())
			}
			prev = e
			n++
		}
		if l.tail != prev {
			t.Fatal("tail is not the last entry")
		}
		if n != l.n {
			t.Fatalf("list counts %d entries; holds %d", l.n, n)
		}
	}
	if got := c.items.Load().ItemCount(); got != len(seen) {
		t.Fatalf("go-cache holds %d entries; the lists %d", got, len(seen))
	}
	if len(seen) > c.opts.MaxEntries {
		t.Fatalf("%d entries held; MaxEntries is %d", len(seen), c.opts.MaxEntries)
	}
}

func body(s string) []byte {
	return []byte(`{"signUpUrl":"https://www.bluetape.com/signup?id=` + s + `"}`)
}

// wantLen stops the test unless c holds want entries; when, if not empty,
// says at which point of the test.
func wantLen(t *testing.T, c *Cache, want int, when string) {
	t.Helper()
	if n := c.Len(); n != want {
		if when != "" {
			when = " " + when
		}
		t.Fatalf("Len() = %d%s; want %d", n, when, want)
	}
}

func wantState(t *testing.T, c *Cache, id string, want State) *Entry {
	t.Helper()
	e, got := c.Get(id)
	if got != want {
		t.Fatalf("Get(%q) state = %d; want %d", id, got, want)
	}
	if (e == nil) != (want == Miss) {
		t.Fatalf("Get(%q) = %v, %d: entry and state disagree", id, e, got)
	}
	return e
}

func TestFoundIsFreshThenStaleThenGone(t *testing.T) {
	c, clk := newCache(t, 10)
	c.SetFound("a", body("1"))
	if e := wantState(t, c, "a", Fresh); string(e.Body) != string(body("1")) || e.Negative() {
		t.Fatalf("got body %q", e.Body)
	}
	clk.Advance(ttl - time.Nanosecond)
	wantState(t, c, "a", Fresh)
	clk.Advance(time.Nanosecond)
	wantState(t, c, "a", Stale)
	clk.Advance(staleTTL - time.Nanosecond)
	wantState(t, c, "a", Stale)
	clk.Advance(time.Nanosecond)
	wantState(t, c, "a", Miss)
	wantLen(t, c, 0, "after the stale window")
}

func TestNotFoundIsFreshThenGoneNeverStale(t *testing.T) {
	c, clk := newCache(t, 10)
	c.SetNotFound("a")
	if e := wantState(t, c, "a", Fresh); !e.Negative() {
		t.Fatal("entry is not negative")
	}
	clk.Advance(negativeTTL)
	wantState(t, c, "a", Miss)
	wantLen(t, c, 0, "")
}

func TestNegativeCachingOff(t *testing.T) {
	clk := gatewaytest.NewClock()
	c := New(Options{TTL: ttl, StaleTTL: staleTTL, MaxEntries: 10, Now: clk.Now})
	t.Cleanup(func() { checkInvariants(t, c) })
	c.SetNotFound("a")
	wantState(t, c, "a", Miss)
	c.SetFound("b", body("b"))
	c.SetNotFound("b") // the upstream said b is gone: its answer goes too
	wantState(t, c, "b", Miss)
	wantLen(t, c, 0, "")
}

func TestStaleOff(t *testing.T) {
	clk := gatewaytest.NewClock()
	c := New(Options{TTL: ttl, NegativeTTL: negativeTTL, MaxEntries: 10, Now: clk.Now})
	c.SetFound("a", body("a"))
	clk.Advance(ttl)
	wantState(t, c, "a", Miss)
}

func TestKindChanges(t *testing.T) {
	c, clk := newCache(t, 10)
	c.SetFound("a", body("a"))
	c.SetNotFound("a")
	if e := wantState(t, c, "a", Fresh); !e.Negative() {
		t.Fatal("a 404 did not replace the answer")
	}
	c.SetFound("a", body("a2"))
	if e := wantState(t, c, "a", Fresh); string(e.Body) != string(body("a2")) {
		t.Fatalf("got %q", e.Body)
	}
	// The new answer has a full TTL of its own.
	clk.Advance(ttl - time.Second)
	c.SetFound("a", body("a3"))
	clk.Advance(time.Minute)
	wantState(t, c, "a", Fresh)
	wantLen(t, c, 1, "")
}

func TestSetFoundNilBodyIsNotNegative(t *testing.T) {
	c, _ := newCache(t, 10)
	c.SetFound("a", nil)
	if e := wantState(t, c, "a", Fresh); e.Negative() {
		t.Fatal("an empty answer was taken as a 404")
	}
}

func TestDelete(t *testing.T) {
	c, clk := newCache(t, 10)
	c.SetFound("a", body("a"))
	c.SetNotFound("n")
	for _, id := range []string{"a", "n"} {
		if !c.Delete(id) {
			t.Errorf("Delete(%q) = false; want true", id)
		}
		wantState(t, c, id, Miss)
		if c.Delete(id) {
			t.Errorf("second Delete(%q) = true; want false", id)
		}
	}
	c.SetFound("s", body("s"))
	clk.Advance(ttl)
	if !c.Delete("s") {
		t.Error("Delete of a stale entry = false; it could still be served")
	}
	c.SetNotFound("x")
	clk.Advance(negativeTTL)
	if c.Delete("x") {
		t.Error("Delete of an expired negative entry = true; it could no longer be served")
	}
}

// fill sets ids "<prefix>0".. in order, negative ones with SetNotFound.
func fill(c *Cache, prefix string, n int, negative bool) {
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("%s%d", prefix, i)
		if negative {
			c.SetNotFound(id)
		} else {
			c.SetFound(id, body(id))
		}
	}
}

func TestEvictsNegativesFirstThenOldest(t *testing.T) {
	c, _ := newCache(t, 6)
	fill(c, "p", 2, false) // p0 p1
	fill(c, "n", 2, true)  // n0 n1
	fill(c, "q", 2, false) // q0 q1: full
	c.SetFound("r0", body("r0"))
	wantState(t, c, "n0", Miss) // oldest negative first, though p0 is older
	wantState(t, c, "n1", Fresh)
	c.SetFound("r1", body("r1"))
	wantState(t, c, "n1", Miss)
	wantState(t, c, "p0", Fresh)
	c.SetNotFound("m0")
	wantState(t, c, "p0", Miss) // no negative left: the oldest answer goes
	c.SetFound("r2", body("r2"))
	wantState(t, c, "m0", Miss)
	wantState(t, c, "p1", Fresh)
	for _, id := range []string{"p1", "q0", "q1", "r0", "r1", "r2"} {
		wantState(t, c, id, Fresh)
	}
}

// The bound holds whatever ids arrive: after ten times MaxEntries distinct
// ids, one in three a 404, the cache never held more than MaxEntries, and
// the survivors are the newest answers, negatives having gone first.
func TestBoundHoldsUnderDistinctIDs(t *testing.T) {
	const max = 100
	c, _ := newCache(t, max)
	for i := 0; i < 10*max; i++ {
		id := fmt.Sprintf("id%d", i)
		if i%3 == 0 {
			c.SetNotFound(id)
		} else {
			c.SetFound(id, body(id))
		}
		if n := c.Len(); n > max {
			t.Fatalf("after %d ids Len() = %d; want at most %d", i+1, n, max)
		}
		if n := c.items.Load().ItemCount(); n > max {
			t.Fatalf("after %d ids go-cache holds %d; want at most %d", i+1, n, max)
		}
	}
	checkInvariants(t, c)
	// Each new id evicted the oldest negative while there was one; the
	// newest negative is all that is left of them.
	if c.negative.n != 1 || c.positive.n != max-1 {
		t.Fatalf("held %d negative and %d successful; want 1 and %d", c.negative.n, c.positive.n, max-1)
	}
	for e := c.positive.head; e != nil; e = e.next {
		var i int
		fmt.Sscanf(e.key(), "id%d", &i)
		if i < 10*max-3*max/2-2 {
			t.Fatalf("an old answer %q outlived newer ones", e.key())
		}
	}
}

// Regression: with one eviction slot per write, an id deleted and cached
// again had two slots, and the old one evicted the new entry before older
// ones.
func TestReinsertedIDIsNotEvictedByItsOldPlace(t *testing.T) {
	c, _ := newCache(t, 3)
	fill(c, "p", 3, false) // p0 p1 p2
	c.Delete("p0")
	c.SetFound("p0", body("p0")) // p1 p2 p0
	c.SetFound("x", body("x"))
	wantState(t, c, "p1", Miss)
	wantState(t, c, "p0", Fresh)
}

// Regression: a rewritten id kept its first place in the order, so a
// just-refreshed answer was evicted first.
func TestRewrittenIDMovesToBack(t *testing.T) {
	c, clk := newCache(t, 3)
	fill(c, "p", 3, false)
	clk.Advance(ttl + time.Minute) // all stale; p0 is fetched again
	c.SetFound("p0", body("p0"))
	c.SetFound("x", body("x"))
	wantState(t, c, "p1", Miss)
	wantState(t, c, "p0", Fresh)
	wantState(t, c, "p2", Stale)
}

// Regression: expired entries still counted against the bound while the
// eviction order skipped them, so live answers were evicted in their
// place, negatives-first order or not.
func TestExpiredEntriesGoBeforeLiveOnes(t *testing.T) {
	c, clk := newCache(t, 3)
	c.SetFound("old", body("old"))
	clk.Advance(ttl + staleTTL) // old can no longer be served
	c.SetNotFound("n")
	c.SetFound("p", body("p"))
	c.SetFound("q", body("q"))
	wantState(t, c, "n", Fresh)
	wantState(t, c, "p", Fresh)
	if n := c.items.Load().ItemCount(); n != 3 {
		t.Fatalf("go-cache holds %d; want 3", n)
	}
	clk.Advance(negativeTTL)
	c.SetFound("r", body("r")) // the expired negative makes room
	wantState(t, c, "p", Fresh)
	wantLen(t, c, 3, "")
}

func TestLenCountsOnlyServableEntries(t *testing.T) {
	c, clk := newCache(t, 10)
	fill(c, "p", 3, false)
	fill(c, "n", 2, true)
	wantLen(t, c, 5, "")
	clk.Advance(negativeTTL)
	wantLen(t, c, 3, "after the negative TTL")
	clk.Advance(ttl)
	wantLen(t, c, 3, "with stale answers")
	clk.Advance(staleTTL)
	wantLen(t, c, 0, "after the stale window")
}

func TestSetEntry(t *testing.T) {
	c, clk := newCache(t, 10)
	now := clk.Now()
	c.SetEntry("a", Entry{Body: body("a"), FreshUntil: now.Add(time.Minute).UnixNano()}, 10*time.Second)
	wantState(t, c, "a", Fresh)
	clk.Advance(10 * time.Second) // kept for keep, though fresh for longer
	wantState(t, c, "a", Miss)

	c.SetEntry("b", Entry{Body: body("b"), FreshUntil: clk.Now().UnixNano()}, time.Hour)
	wantState(t, c, "b", Stale)
	c.SetEntry("n", Entry{FreshUntil: clk.Now().Add(time.Minute).UnixNano()}, time.Hour)
	if e := wantState(t, c, "n", Fresh); !e.Negative() {
		t.Fatal("not negative")
	}
	clk.Advance(time.Minute) // never longer than its own windows
	wantState(t, c, "n", Miss)
	c.SetEntry("z", Entry{Body: body("z"), FreshUntil: clk.Now().Add(time.Minute).UnixNano()}, 0)
	wantState(t, c, "z", Miss)
}

func TestPurge(t *testing.T) {
	c, _ := newCache(t, 10)
	fill(c, "p", 3, false)
	fill(c, "n", 3, true)
	c.Purge()
	wantLen(t, c, 0, "")
	fill(c, "p", 3, false)
	wantState(t, c, "p2", Fresh)
}

func TestSweep(t *testing.T) {
	c, clk := newCache(t, 10)
	fill(c, "n", 3, true)
	clk.Advance(negativeTTL)
	c.Sweep()
	if n := c.items.Load().ItemCount(); n != 0 {
		t.Fatalf("go-cache still holds %d expired entries", n)
	}
}

func TestGetAllocatesNothing(t *testing.T) {
	c, _ := newCache(t, 10)
	c.SetFound("a", body("a"))
	c.SetNotFound("n")
	if n := testing.AllocsPerRun(100, func() {
		c.Get("a")
		c.Get("n")
		c.Get("missing")
	}); n != 0 {
		t.Errorf("Get allocates %v times per run; want 0", n)
	}
}

func TestConcurrentUse(t *testing.T) {
	const max = 64
	c, clk := newCache(t, max)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Go(func() {
			for i := 0; i < 2000; i++ {
				id := fmt.Sprintf("id%d", (i*7+g*13)%200)
				switch i % 5 {
				case 0:
					c.SetNotFound(id)
				case 1:
					c.Delete(id)
				case 2:
					if g == 0 {
						clk.Advance(time.Second)
					}
					c.Len()
				default:
					c.SetFound(id, body(id))
				}
				if e, st := c.Get(id); st != Miss && !e.Negative() && len(e.Body) == 0 {
					t.Error("served an empty answer")
				}
			}
		})
	}
	wg.Wait()
	checkInvariants(t, c)
}

// heapInUse returns the live heap after a collection.
func heapInUse() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// A flood of distinct ids, the worst case of callers choosing ids, leaves
// memory where a full cache put it: nothing grows with the number of ids
// seen, only with MaxEntries.
func TestMemoryFlatUnderFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a cache with 10k entries many times over")
	}
	const max = 10_000
	c, _ := newCache(t, max)
	n := uint64(0)
	flood := func(count int) {
		for i := 0; i < count; i++ {
			n++
			id := hexID(n)
			switch n % 4 {
			case 0:
				c.SetNotFound(id)
			case 1:
				c.Delete(hexID(n - 7)) // operator evictions leave no trace
				fallthrough
			default:
				c.SetFound(id, signupBody(id))
			}
		}
	}
	flood(2 * max)
	full := heapInUse()
	flood(20 * max)
	after := heapInUse()
	t.Logf("heap with a full cache: %d B; after %d more ids: %d B", full, 20*max, after)
	if after > full+full/10 {
		t.Errorf("heap grew from %d to %d bytes under a flood of distinct ids", full, after)
	}
	if l := c.Len(); l > max {
		t.Errorf("Len() = %d; want at most %d", l, max)
	}
	runtime.KeepAlive(c)
}

// TestCompactKeepsEveryEntry churns a full cache through several
// rebuilds of go-cache's map, with lookups running beside the writes, and
// checks that the map is rebuilt and that every entry held is found, with
// its body, and every evicted one is not.
func TestCompactKeepsEveryEntry(t *testing.T) {
	const max = 2000
	c, _ := newCache(t, max)
	first := c.items.Load()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // lookups while the map is swapped
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
				c.Get(fmt.Sprintf("id-%d", i%(5*max)))
			}
		}
	}()
	for i := range 5 * max {
		id := fmt.Sprintf("id-%d", i)
		c.SetFound(id, []byte(`{"signUpUrl":"https://a/`+id+`"}`))
	}
	close(stop)
	<-done
	if c.items.Load() == first {
		t.Fatal("8,000 evictions from 2,000 entries did not rebuild the map")
	}
	for i := range 5 * max {
		id := fmt.Sprintf("id-%d", i)
		e, state := c.Get(id)
		switch {
		case i < 4*max && state != Miss:
			t.Fatalf("%s: state %v; want Miss, it was evicted", id, state)
		case i >= 4*max && state != Fresh:
			t.Fatalf("%s: state %v; want Fresh", id, state)
		case i >= 4*max && string(e.Body) != `{"signUpUrl":"https://a/`+id+`"}`:
			t.Fatalf("%s: body %s", id, e.Body)
		}
	}
}

// A guard on the cost of an entry, also in a cache at its bound whose
// entries were replaced (the churn counts end just before a rebuild of
// go-cache's map, or between two); BenchmarkEntryBytes reports it.
func TestEntryMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a cache with 100k entries")
	}
	const limit = 215
	for _, churn := range []int{0, 24_000, 150_000, 199_000} {
		if b := heapPerEntry(100_000, churn); b > limit {
			t.Errorf("after %d evictions, an entry costs %.1f heap bytes; want at most %d", churn, b, limit)
		} else {
			t.Logf("after %d evictions, an entry costs %.1f heap bytes", churn, b)
		}
	}
}
