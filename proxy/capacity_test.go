package proxy

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluetape/bluetape-gateway/metrics"
	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
)

// blockingUpstream holds every request until released, and counts the
// requests it holds at once.
type blockingUpstream struct {
	release chan struct{}
	once    sync.Once
	now     atomic.Int64
	peak    atomic.Int64
}

func newBlockingUpstream(t *testing.T) *blockingUpstream {
	b := &blockingUpstream{release: make(chan struct{})}
	t.Cleanup(b.open)
	return b
}

// open lets every held request, and every later one, be answered.
func (b *blockingUpstream) open() { b.once.Do(func() { close(b.release) }) }

func (b *blockingUpstream) handler(w http.ResponseWriter, r *http.Request) {
	n := b.now.Add(1)
	defer b.now.Add(-1)
	for {
		p := b.peak.Load()
		if n <= p || b.peak.CompareAndSwap(p, n) {
			break
		}
	}
	select {
	case <-b.release:
		foundAnswer(w, r)
	case <-r.Context().Done():
	}
}

// TestCallersThatHangUpDoNotPileUpUpstreamCalls sends 600 requests for
// distinct cold ids, each given up by its caller after 1 ms, to an
// upstream that answers nothing: the upstream calls kept running for them
// never exceed GATEWAY_UPSTREAM_MAX_IN_FLIGHT.
func TestCallersThatHangUpDoNotPileUpUpstreamCalls(t *testing.T) {
	const callers, upstreamCap = 600, 4
	up := newBlockingUpstream(t)
	tg := newTestGateway(t, func(o *testOptions) {
		o.Client.Timeout = time.Minute
		o.Client.MaxInFlight = upstreamCap
	})
	tg.Upstream.setHandler(up.handler)

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			// The caller hangs up 1 ms after its request is sent, so
			// that every request reaches the gateway however busy the
			// machine is.
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
				WroteRequest: func(httptrace.WroteRequestInfo) { time.AfterFunc(time.Millisecond, cancel) },
			})
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/customers/c%d/signup", tg.URL, i), nil)
			if resp, err := client.Do(req); err == nil {
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	// Every caller has hung up; their requests finish on the gateway.
	gatewaytest.WaitFor(t, 30*time.Second, "the API requests to end", func() bool { return tg.InFlight() == 0 })

	if got := tg.upstream.InFlight(); got > upstreamCap {
		t.Errorf("%d upstream calls in progress; want at most %d", got, upstreamCap)
	}
	if got := metricValue(t, tg.Registry, metrics.UpstreamInFlight); got > upstreamCap || got != float64(tg.upstream.InFlight()) {
		t.Errorf("upstream in-flight gauge %v; want %d, at most %d", got, tg.upstream.InFlight(), upstreamCap)
	}
	up.open()
	gatewaytest.WaitFor(t, 30*time.Second, "the upstream calls to end", func() bool { return tg.upstream.InFlight() == 0 })
	if got := up.peak.Load(); got > upstreamCap || got < 1 {
		t.Errorf("the upstream held %d requests at once; want 1 to %d", got, upstreamCap)
	}
	if got := metricValue(t, tg.Registry, metrics.UpstreamInFlight); got != 0 {
		t.Errorf("upstream in-flight gauge %v after the calls ended; want 0", got)
	}
}

// TestCapacityRefusesOnlyWhatNeedsTheUpstream fills both caps, the API's
// and the upstream's, with requests that wait for a slow upstream: an id
// the cache holds is still answered, fresh or stale, and only a request
// that needs the upstream is refused, with Retry-After.
func TestCapacityRefusesOnlyWhatNeedsTheUpstream(t *testing.T) {
	const apiCap = 2
	tg := newTestGateway(t, func(o *testOptions) {
		o.Client.Timeout = time.Minute
		o.Client.MaxInFlight = 1
		o.MaxInFlight = apiCap
	})
	// One entry past its freshness, one fresh.
	wantGet(t, tg, "/customers/old/signup", "old", "MISS")
	tg.Clock.Advance(16 * time.Minute)
	wantGet(t, tg, "/customers/hot/signup", "hot", "MISS")

	up := newBlockingUpstream(t)
	tg.Upstream.setHandler(up.handler)
	// Two requests share one held upstream call: the upstream cap (1)
	// and the API cap (2) are both full.
	held := make([]<-chan result, apiCap)
	for i := range held {
		held[i] = fetchAsync(context.Background(), tg.URL+"/customers/cold/signup")
	}
	gatewaytest.WaitFor(t, 10*time.Second, "both caps to be full", func() bool {
		return tg.InFlight() == apiCap && tg.upstream.InFlight() == 1 && up.now.Load() == 1
	})

	for range 3 {
		tg.wantFound(t, "hot", "HIT")
		tg.wantFound(t, "old", "STALE")
	}
	resp, body := tg.get(t, "/customers/other/signup")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("a cold id at capacity: status %d, Retry-After %q; want 503 with Retry-After (%s)",
			resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}

	up.open()
	for i, ch := range held {
		if r := <-ch; r.err != nil || r.status != http.StatusOK {
			t.Errorf("held request %d: %d %v; want 200", i, r.status, r.err)
		}
	}
	if got := tg.Upstream.calls.Load(); got != 3 {
		t.Errorf("upstream calls %d; want 3 (old, hot, cold)", got)
	}
}

// TestUpstreamCapRefusesOnlyWhatNeedsTheUpstream fills the upstream cap
// alone: an id the cache holds, fresh or stale, is answered, and a cold
// one gets 503 with Retry-After without reaching the upstream.
func TestUpstreamCapRefusesOnlyWhatNeedsTheUpstream(t *testing.T) {
	tg := newTestGateway(t, func(o *testOptions) {
		o.Client.Timeout = time.Minute
		o.Client.MaxInFlight = 1
	})
	wantGet(t, tg, "/customers/old/signup", "old", "MISS")
	tg.Clock.Advance(16 * time.Minute)
	wantGet(t, tg, "/customers/hot/signup", "hot", "MISS")

	up := newBlockingUpstream(t)
	tg.Upstream.setHandler(up.handler)
	held := fetchAsync(context.Background(), tg.URL+"/customers/cold/signup")
	gatewaytest.WaitFor(t, 10*time.Second, "the upstream cap to be full", func() bool { return up.now.Load() == 1 })

	wantGet(t, tg, "/customers/hot/signup", "hot", "HIT")
	wantGet(t, tg, "/customers/old/signup", "old", "STALE")
	resp, body := tg.get(t, "/customers/other/signup")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("a cold id at the upstream cap: status %d, Retry-After %q; want 503 with Retry-After 1 (%s)",
			resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	up.open()
	if r := <-held; r.err != nil || r.status != http.StatusOK {
		t.Errorf("held request: %d %v; want 200", r.status, r.err)
	}
	if got := tg.Upstream.calls.Load(); got != 3 {
		t.Errorf("upstream calls %d; want 3 (old, hot, cold)", got)
	}
}

// wantGet requests path and fails the test unless it is a 200 with id's
// answer and the given X-Cache.
func wantGet(t *testing.T, tg *testGateway, path, id, xcache string) {
	t.Helper()
	resp, body := tg.get(t, path)
	wantAnswer(t, resp, body, id, xcache)
}
