package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/bluetape/bluetape-gateway/metrics"
	"github.com/bluetape/bluetape-gateway/proxy/cache"
	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
)

// signupAnswer is the gateway's 200 body for an id the fake upstream
// knows: its URL, re-encoded without spaces.
func signupAnswer(id string) string {
	return `{"signUpUrl":"https://www.bluetape.com/signup?id=` + id + `"}`
}

// wantAnswer fails the test unless resp is a 200 with id's answer and the
// given X-Cache.
func wantAnswer(t *testing.T, resp *http.Response, body, id, xcache string) {
	t.Helper()
	if resp.StatusCode != http.StatusOK || body != signupAnswer(id) || resp.Header.Get("X-Cache") != xcache {
		t.Fatalf("got %d, X-Cache %q, body %s; want 200, X-Cache %s, %s",
			resp.StatusCode, resp.Header.Get("X-Cache"), body, xcache, signupAnswer(id))
	}
}

// wantFound requests id's signup from tg and fails the test unless the
// answer is id's, with the given X-Cache.
func (tg *testGateway) wantFound(t *testing.T, id, xcache string) {
	t.Helper()
	resp, body := tg.get(t, "/customers/"+id+"/signup")
	wantAnswer(t, resp, body, id, xcache)
}

// wantStatus fails the test unless resp has status and no X-Cache header.
func wantStatus(t *testing.T, resp *http.Response, body string, status int) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("got %d (%s); want %d", resp.StatusCode, body, status)
	}
	if x := resp.Header.Get("X-Cache"); x != "" {
		t.Errorf("a %d carries X-Cache %q", status, x)
	}
}

// wantCalls fails the test unless the fake upstream was called n times.
func wantCalls(t *testing.T, tg *testGateway, n int64) {
	t.Helper()
	if got := tg.Upstream.calls.Load(); got != n {
		t.Fatalf("upstream called %d times; want %d", got, n)
	}
}

// wantCallsAndCache fails the test unless the fake upstream was called
// calls times and tg's cache metrics are want.
func wantCallsAndCache(t *testing.T, tg *testGateway, calls int64, want cacheCounts) {
	t.Helper()
	wantCalls(t, tg, calls)
	wantCacheMetrics(t, tg.Registry, want)
}

// cacheCounts are the values of the cache metrics.
type cacheCounts struct {
	hit, miss, stale, negativeHit, entries float64
}

// wantCacheMetrics compares the cache metrics with want, using
// testutil.GatherAndCompare. The help texts are taken from the registry,
// so that only the names, types, labels and values are pinned here. A
// request's metrics are recorded just after its answer is written, so the
// comparison is retried until it matches or a deadline passes.
func wantCacheMetrics(t *testing.T, reg *prometheus.Registry, want cacheCounts) {
	t.Helper()
	help := map[string]string{}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		help[f.GetName()] = f.GetHelp()
	}
	expected := fmt.Sprintf(`# HELP %[1]s %[2]s
# TYPE %[1]s gauge
%[1]s %[3]v
# HELP %[4]s %[5]s
# TYPE %[4]s counter
%[4]s{result="hit"} %[6]v
%[4]s{result="miss"} %[7]v
%[4]s{result="negative_hit"} %[8]v
%[4]s{result="stale"} %[9]v
`, metrics.CacheEntries, help[metrics.CacheEntries], want.entries,
		metrics.CacheLookupsTotal, help[metrics.CacheLookupsTotal], want.hit, want.miss, want.negativeHit, want.stale)
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := testutil.GatherAndCompare(reg, strings.NewReader(expected), metrics.CacheEntries, metrics.CacheLookupsTotal)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cache metrics: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
}

// gate is a slow upstream: each request it receives is announced on
// entered, then held until the test opens the gate. The gate opens at
// cleanup at the latest, before the fake upstream closes, since its Close
// waits for every handler.
type gate struct {
	entered chan string
	open    chan struct{}
	once    sync.Once
}

func newGate(t *testing.T) *gate {
	g := &gate{entered: make(chan string, 1000), open: make(chan struct{})}
	t.Cleanup(g.release)
	return g
}

func (g *gate) release() { g.once.Do(func() { close(g.open) }) }

// hold returns a handler that waits at the gate, then answers with next.
func (g *gate) hold(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		g.entered <- lastSegment(r.URL.Path)
		<-g.open
		next(w, r)
	}
}

// waitEntered waits for the gate to announce a request.
func (g *gate) waitEntered(t *testing.T) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream received no request")
	}
}

// loadWaiters counts the goroutines blocked in load's wait for a shared
// upstream call: requests that have joined the call.
func loadWaiters() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "[select") && strings.Contains(g, "proxy.(*Gateway).load(") {
			count++
		}
	}
	return count
}

// result is one response, read in another goroutine.
type result struct {
	status int
	xcache string
	body   string
	err    error
}

// fetchAsync requests url with ctx and the given header pairs, and
// delivers the result on a channel.
func fetchAsync(ctx context.Context, url string, header ...string) <-chan result {
	ch := make(chan result, 1)
	go func() {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			ch <- result{err: err}
			return
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		ch <- result{status: resp.StatusCode, xcache: resp.Header.Get("X-Cache"), body: string(b), err: err}
	}()
	return ch
}

// 100 concurrent requests for one cold id make one upstream call, and
// every one of them gets the answer.
func TestCacheCoalescesConcurrentColdRequests(t *testing.T) {
	const n = 100
	tg := newTestGateway(t, func(o *testOptions) { o.Client.Timeout = time.Minute })
	g := newGate(t)
	tg.Upstream.setHandler(g.hold(foundAnswer))

	results := make([]<-chan result, n)
	for i := range results {
		results[i] = fetchAsync(context.Background(), tg.URL+"/customers/c0ffee/signup")
	}
	g.waitEntered(t)
	gatewaytest.WaitFor(t, 10*time.Second, fmt.Sprintf("%d requests wait for the shared call", n), func() bool { return loadWaiters() == n })
	g.release()

	for i, ch := range results {
		r := <-ch
		if r.err != nil {
			t.Fatalf("request %d: %v", i, r.err)
		}
		if r.status != http.StatusOK || r.body != signupAnswer("c0ffee") || r.xcache != "MISS" {
			t.Fatalf("request %d: got %d, X-Cache %q, %s", i, r.status, r.xcache, r.body)
		}
	}
	wantCallsAndCache(t, tg, 1, cacheCounts{miss: n, entries: 1})

	tg.wantFound(t, "c0ffee", "HIT")
	wantCallsAndCache(t, tg, 1, cacheCounts{hit: 1, miss: n, entries: 1})
}

// The request that started the shared call goes away; the call goes on
// and completes, the others get its answer, and it is cached.
func TestCacheCancelledWaiterKeepsSharedCall(t *testing.T) {
	const others = 9
	tg := newTestGateway(t, func(o *testOptions) { o.Client.Timeout = time.Minute })
	g := newGate(t)
	var mu sync.Mutex
	var upstreamErr error
	tg.Upstream.setHandler(g.hold(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		upstreamErr = r.Context().Err()
		mu.Unlock()
		foundAnswer(w, r)
	}))
	url := tg.URL + "/customers/c0ffee/signup"

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := fetchAsync(ctx, url)
	g.waitEntered(t) // the first request leads the shared call
	results := make([]<-chan result, others)
	for i := range results {
		results[i] = fetchAsync(context.Background(), url)
	}
	gatewaytest.WaitFor(t, 10*time.Second, "every request waits for the shared call", func() bool { return loadWaiters() == others+1 })

	cancel()
	if r := <-first; r.err == nil {
		t.Fatalf("the cancelled request got %d", r.status)
	}
	gatewaytest.WaitFor(t, 10*time.Second, "the gateway is done with the cancelled request", func() bool { return tg.InFlight() == others })
	g.release()

	for i, ch := range results {
		r := <-ch
		if r.err != nil || r.status != http.StatusOK || r.body != signupAnswer("c0ffee") || r.xcache != "MISS" {
			t.Fatalf("request %d: got %d, X-Cache %q, %s, %v", i, r.status, r.xcache, r.body, r.err)
		}
	}
	wantCalls(t, tg, 1)
	mu.Lock()
	if upstreamErr != nil {
		t.Errorf("the upstream request was cancelled: %v", upstreamErr)
	}
	mu.Unlock()
	gatewaytest.WaitFor(t, 10*time.Second, "the upstream call is counted", func() bool {
		return metricValue(t, tg.Registry, metrics.UpstreamRequestsTotal, "outcome", "200") == 1
	})

	tg.wantFound(t, "c0ffee", "HIT")
	wantCalls(t, tg, 1)
}

func TestCacheNegative(t *testing.T) {
	t.Run("on", func(t *testing.T) {
		tg := newTestGateway(t, nil)
		tg.Upstream.answer(http.StatusNotFound, notFoundBody)
		for i := 0; i < 2; i++ {
			resp, body := tg.get(t, "/customers/gone/signup")
			wantStatus(t, resp, body, http.StatusNotFound)
			if want := `{"code":"404","reason":"Customer not found."}`; body != want {
				t.Errorf("body %s; want %s", body, want)
			}
		}
		wantCallsAndCache(t, tg, 1, cacheCounts{miss: 1, negativeHit: 1, entries: 1})

		tg.Clock.Advance(30*time.Second - time.Nanosecond)
		resp, body := tg.get(t, "/customers/gone/signup")
		wantStatus(t, resp, body, http.StatusNotFound)
		wantCalls(t, tg, 1)

		tg.Clock.Advance(time.Nanosecond) // GATEWAY_NEGATIVE_CACHE_TTL is over
		resp, body = tg.get(t, "/customers/gone/signup")
		wantStatus(t, resp, body, http.StatusNotFound)
		wantCallsAndCache(t, tg, 2, cacheCounts{miss: 2, negativeHit: 2, entries: 1})
	})
	t.Run("off", func(t *testing.T) {
		tg := newTestGateway(t, nil, cache.Options{TTL: 15 * time.Minute, StaleTTL: 24 * time.Hour, MaxEntries: 1000})
		tg.Upstream.answer(http.StatusNotFound, notFoundBody)
		for i := 0; i < 3; i++ {
			resp, body := tg.get(t, "/customers/gone/signup")
			wantStatus(t, resp, body, http.StatusNotFound)
		}
		wantCallsAndCache(t, tg, 3, cacheCounts{miss: 3})
	})
}

func TestCacheTTLExpiry(t *testing.T) {
	tg := newTestGateway(t, nil)
	tg.wantFound(t, "abc", "MISS")
	tg.Clock.Advance(15*time.Minute - time.Nanosecond)
	tg.wantFound(t, "abc", "HIT")
	wantCalls(t, tg, 1)

	// At GATEWAY_CACHE_TTL the answer is fetched again, and the new one
	// is what is served and cached.
	tg.Clock.Advance(time.Nanosecond)
	tg.Upstream.answer(http.StatusOK, `{"signUpUrl": "https://www.bluetape.com/signup?id=new"}`)
	resp, body := tg.get(t, "/customers/abc/signup")
	if resp.StatusCode != http.StatusOK || body != signupAnswer("new") || resp.Header.Get("X-Cache") != "MISS" {
		t.Fatalf("got %d, X-Cache %q, %s; want the new answer, MISS", resp.StatusCode, resp.Header.Get("X-Cache"), body)
	}
	resp, body = tg.get(t, "/customers/abc/signup")
	if body != signupAnswer("new") || resp.Header.Get("X-Cache") != "HIT" {
		t.Fatalf("got X-Cache %q, %s; want the new answer, HIT", resp.Header.Get("X-Cache"), body)
	}
	wantCallsAndCache(t, tg, 2, cacheCounts{hit: 2, miss: 2, entries: 1})
}

// An expired answer is served, marked STALE, while the upstream fails, for
// GATEWAY_STALE_TTL after it expired, and not after.
func TestCacheStaleIfError(t *testing.T) {
	cases := map[string]struct {
		timeout time.Duration
		fail    func(t *testing.T, tg *testGateway) // makes the upstream fail
		misses  float64                             // cache misses counted by fail
		past    []int                               // status once the stale window is over
	}{
		"500": {
			fail: func(t *testing.T, tg *testGateway) {
				tg.Upstream.answer(http.StatusInternalServerError, `{"code": "500", "reason": "Unexpected error."}`)
			},
			past: []int{http.StatusBadGateway},
		},
		"timeout": {
			timeout: 100 * time.Millisecond,
			fail: func(t *testing.T, tg *testGateway) {
				g := newGate(t) // never opened before the test ends
				tg.Upstream.setHandler(g.hold(foundAnswer))
			},
			past: []int{http.StatusGatewayTimeout},
		},
		"reset connection": {
			fail: func(t *testing.T, tg *testGateway) { tg.Upstream.setHandler(resetConnection) },
			// Resets are retried: by the third request the failed attempts
			// may have opened the circuit breaker.
			past: []int{http.StatusBadGateway, http.StatusServiceUnavailable},
		},
		"circuit open": {
			fail: func(t *testing.T, tg *testGateway) {
				tg.Upstream.answer(http.StatusInternalServerError, `{"code": "500", "reason": "Unexpected error."}`)
				for i := 0; i < 5; i++ { // five failures in a row open the breaker
					tg.get(t, fmt.Sprintf("/customers/trip%d/signup", i))
				}
				calls := tg.Upstream.calls.Load()
				resp, body := tg.get(t, "/customers/other/signup")
				wantStatus(t, resp, body, http.StatusServiceUnavailable)
				wantCalls(t, tg, calls)
			},
			misses: 6,
			past:   []int{http.StatusServiceUnavailable},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			tg := newTestGateway(t, func(o *testOptions) {
				if tc.timeout > 0 {
					o.Client.Timeout = tc.timeout
				}
			})
			tg.wantFound(t, "abc", "MISS")
			tc.fail(t, tg)

			tg.Clock.Advance(15 * time.Minute) // the answer has expired
			tg.wantFound(t, "abc", "STALE")
			tg.Clock.Advance(24*time.Hour - time.Nanosecond)
			tg.wantFound(t, "abc", "STALE")
			wantCacheMetrics(t, tg.Registry, cacheCounts{miss: 1 + tc.misses, stale: 2, entries: 1})

			tg.Clock.Advance(time.Nanosecond) // GATEWAY_STALE_TTL is over
			resp, body := tg.get(t, "/customers/abc/signup")
			if !slices.Contains(tc.past, resp.StatusCode) || resp.Header.Get("X-Cache") != "" {
				t.Fatalf("past the stale window: got %d, X-Cache %q (%s); want one of %v", resp.StatusCode,
					resp.Header.Get("X-Cache"), body, tc.past)
			}
			if tg.Cache.Len() != 0 {
				t.Errorf("Len() = %d past the stale window; want 0", tg.Cache.Len())
			}
		})
	}
}

// An upstream 404 is an answer, not a failure: it replaces an expired
// answer, and the next request is a 404 from the cache.
func TestCacheStaleReplacedBy404(t *testing.T) {
	for name, negativeTTL := range map[string]time.Duration{"negative cache on": 30 * time.Second, "negative cache off": 0} {
		t.Run(name, func(t *testing.T) {
			tg := newTestGateway(t, nil, cache.Options{TTL: 15 * time.Minute, NegativeTTL: negativeTTL,
				StaleTTL: 24 * time.Hour, MaxEntries: 1000})
			tg.wantFound(t, "abc", "MISS")
			tg.Clock.Advance(16 * time.Minute)
			tg.Upstream.answer(http.StatusNotFound, notFoundBody)
			resp, body := tg.get(t, "/customers/abc/signup")
			wantStatus(t, resp, body, http.StatusNotFound)

			// The old answer is gone: even a failing upstream gets no
			// STALE answer out of it.
			tg.Upstream.answer(http.StatusInternalServerError, `{"code": "500", "reason": "Unexpected error."}`)
			resp, body = tg.get(t, "/customers/abc/signup")
			if negativeTTL > 0 {
				wantStatus(t, resp, body, http.StatusNotFound)
				wantCallsAndCache(t, tg, 2, cacheCounts{miss: 2, negativeHit: 1, entries: 1})
			} else {
				wantStatus(t, resp, body, http.StatusBadGateway)
				wantCallsAndCache(t, tg, 3, cacheCounts{miss: 3})
			}
		})
	}
}

// An upstream 400 passes through and leaves the expired answer in place.
func TestCacheStaleKeptOn400(t *testing.T) {
	tg := newTestGateway(t, nil)
	tg.wantFound(t, "abc", "MISS")
	tg.Clock.Advance(16 * time.Minute)
	tg.Upstream.answer(http.StatusBadRequest, `{"code": "400", "reason": "Invalid customer."}`)
	resp, body := tg.get(t, "/customers/abc/signup")
	wantStatus(t, resp, body, http.StatusBadRequest)
	if body != `{"code":"400","reason":"Invalid customer."}` {
		t.Errorf("body %s; want the upstream's reason", body)
	}
	tg.Upstream.answer(http.StatusInternalServerError, `{"code": "500", "reason": "Unexpected error."}`)
	tg.wantFound(t, "abc", "STALE")
	wantCacheMetrics(t, tg.Registry, cacheCounts{miss: 2, stale: 1, entries: 1})
}

// Ten times GATEWAY_CACHE_MAX_ENTRIES distinct ids, one in four unknown
// upstream: the cache never holds more than the bound, 404s are evicted
// before answers, and answers oldest first.
func TestCacheBoundThroughGateway(t *testing.T) {
	const max, n = 20, 200
	tg := newTestGateway(t, nil, cache.Options{TTL: 15 * time.Minute, NegativeTTL: 30 * time.Second,
		StaleTTL: 24 * time.Hour, MaxEntries: max})
	negative := func(i int) bool { return i%4 == 3 }
	tg.Upstream.setHandler(func(w http.ResponseWriter, r *http.Request) {
		var i int
		fmt.Sscanf(lastSegment(r.URL.Path), "id%d", &i)
		if negative(i) {
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, notFoundBody)
			return
		}
		foundAnswer(w, r)
	})
	var found []int
	for i := 0; i < n; i++ {
		resp, body := tg.get(t, fmt.Sprintf("/customers/id%d/signup", i))
		if negative(i) {
			wantStatus(t, resp, body, http.StatusNotFound)
		} else {
			wantAnswer(t, resp, body, fmt.Sprintf("id%d", i), "MISS")
			found = append(found, i)
		}
		if l := tg.Cache.Len(); l > max {
			t.Fatalf("after %d ids the cache holds %d; want at most %d", i+1, l, max)
		}
	}
	wantCallsAndCache(t, tg, n, cacheCounts{miss: n, entries: max})

	// Held: the last 404 and the newest max-1 answers. Lookups of held
	// ids come first, since a miss would evict.
	for _, i := range found[len(found)-(max-1):] {
		id := fmt.Sprintf("id%d", i)
		resp, body := tg.get(t, "/customers/"+id+"/signup")
		wantAnswer(t, resp, body, id, "HIT")
	}
	resp, body := tg.get(t, fmt.Sprintf("/customers/id%d/signup", n-1))
	wantStatus(t, resp, body, http.StatusNotFound)
	wantCalls(t, tg, n)
	id := fmt.Sprintf("id%d", found[len(found)-max])
	resp, body = tg.get(t, "/customers/"+id+"/signup")
	wantAnswer(t, resp, body, id, "MISS")
	resp, body = tg.get(t, fmt.Sprintf("/customers/id%d/signup", n-5))
	wantStatus(t, resp, body, http.StatusNotFound)
	wantCallsAndCache(t, tg, n+2, cacheCounts{hit: max - 1, miss: n + 2, negativeHit: 1, entries: max})
}

// An operator evicts an id on the admin listener; the next request goes
// upstream.
func TestCacheEvictionOverAdmin(t *testing.T) {
	tg := newTestGateway(t, nil)
	admin := tg.startAdmin(t)
	evict := func(id string) (*http.Response, string) {
		t.Helper()
		return httpDo(t, http.MethodDelete, admin+"/cache/customers/"+id, "Authorization", "Bearer "+testAdminToken)
	}

	tg.wantFound(t, "abc", "MISS")
	if resp, body := evict("abc"); resp.StatusCode != http.StatusNoContent || body != "" {
		t.Fatalf("DELETE of a cached id: %d %q; want 204 and no body", resp.StatusCode, body)
	}
	wantCacheMetrics(t, tg.Registry, cacheCounts{miss: 1})
	tg.wantFound(t, "abc", "MISS")
	wantCalls(t, tg, 2)

	resp, body := evict("unknown")
	if resp.StatusCode != http.StatusNotFound || resp.Header.Get("Content-Type") != "application/json" ||
		!strings.Contains(body, `"code":"404"`) {
		t.Fatalf("DELETE of an id not cached: %d %s; want a 404 error body", resp.StatusCode, body)
	}
	if resp, body := evict("bad%20id"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("DELETE of an invalid id: %d %s; want 400", resp.StatusCode, body)
	}

	// A remembered 404 can be evicted too.
	tg.Upstream.answer(http.StatusNotFound, notFoundBody)
	resp, body = tg.get(t, "/customers/gone/signup")
	wantStatus(t, resp, body, http.StatusNotFound)
	if resp, _ := evict("gone"); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE of a negative entry: %d; want 204", resp.StatusCode)
	}
	resp, body = tg.get(t, "/customers/gone/signup")
	wantStatus(t, resp, body, http.StatusNotFound)
	wantCalls(t, tg, 4)

	// So can an expired answer kept for stale serving, which then is not
	// served when the upstream fails.
	tg.Upstream.setHandler(foundAnswer)
	tg.wantFound(t, "old", "MISS")
	tg.Clock.Advance(16 * time.Minute)
	if resp, _ := evict("old"); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE of a stale entry: %d; want 204", resp.StatusCode)
	}
	tg.Upstream.answer(http.StatusInternalServerError, `{"code": "500", "reason": "Unexpected error."}`)
	resp, body = tg.get(t, "/customers/old/signup")
	wantStatus(t, resp, body, http.StatusBadGateway)
}
