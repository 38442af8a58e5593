package proxy

import (
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluetape/bluetape-gateway/metrics"
	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
)

// Over MaxInFlight concurrent requests, the next one is refused at once
// with 503, Retry-After and the contract's error body; a freed slot is
// usable again.
func TestMaxInFlightRefusesOverCap(t *testing.T) {
	release := make(chan struct{})
	tg := newTestGateway(t, func(o *testOptions) { o.MaxInFlight = 2 })
	tg.Upstream.setHandler(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		foundAnswer(w, r)
	})
	var wg sync.WaitGroup
	statuses := make([]int, 2)
	for i := range 2 {
		wg.Go(func() {
			status, err := getStatus(fmt.Sprintf("%s/customers/held-%d/signup", tg.URL, i))
			if err != nil {
				t.Error(err)
			}
			statuses[i] = status
		})
	}
	gatewaytest.WaitFor(t, 5*time.Second, "two requests in the upstream", func() bool { return tg.Upstream.calls.Load() == 2 })
	if got := metricValue(t, tg.Registry, metrics.InFlightRequests); got != 2 {
		t.Errorf("%s %v; want 2", metrics.InFlightRequests, got)
	}

	start := time.Now()
	resp, body := tg.get(t, "/customers/third/signup")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("status %d, Retry-After %q; want 503 with Retry-After (%s)", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	errorBodyOf(t, resp, body)
	if !strings.Contains(body, "capacity") {
		t.Errorf("reason in %s does not say the gateway is at capacity", body)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("refusal took %v; want at once", d)
	}
	if got := tg.Upstream.calls.Load(); got != 2 {
		t.Errorf("upstream calls %d; the refused request must not reach it", got)
	}

	close(release)
	wg.Wait()
	if statuses[0] != 200 || statuses[1] != 200 {
		t.Errorf("held requests answered %v; want 200 200", statuses)
	}
	if resp, _ := tg.get(t, "/customers/after/signup"); resp.StatusCode != 200 {
		t.Errorf("after the held requests: status %d; want 200", resp.StatusCode)
	}
	if got := metricValue(t, tg.Registry, metrics.InFlightRequests); got != 0 {
		t.Errorf("%s %v at rest; want 0", metrics.InFlightRequests, got)
	}
}

// settledGoroutines waits until the goroutine count is at most limit,
// closing the gateway's idle upstream connections as it polls (a pooled
// keep-alive connection holds two goroutines; the pool is bounded and
// expires idle connections, so they are not a leak). It returns the
// last count seen.
func settledGoroutines(tg *testGateway, limit int, within time.Duration) int {
	deadline := time.Now().Add(within)
	for {
		tg.upstream.CloseIdleConnections()
		http.DefaultClient.CloseIdleConnections()
		n := runtime.NumGoroutine()
		if n <= limit || time.Now().After(deadline) {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// wantGoroutinesBack fails the test, with every goroutine's stack, unless
// the goroutines come back to at most baseline and a slack of 5 within
// the time given; when says after what.
func wantGoroutinesBack(t *testing.T, tg *testGateway, baseline int, within time.Duration, when string) {
	t.Helper()
	const slack = 5
	if n := settledGoroutines(tg, baseline+slack, within); n > baseline+slack {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Fatalf("goroutines %d %s; baseline %d\n%s", n, when, baseline, buf)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// Connections that send half a request, or a whole one and hang up
// before the answer, leave nothing behind once they are gone: no
// goroutine and no memory.
func TestAbandonedConnectionsLeaveNothingBehind(t *testing.T) {
	// The calls its callers left stay in flight for a while: the upstream
	// cap is set above all of them, since what is measured here is what
	// they leave behind, not the cap (capacity_test.go tests that).
	tg := newTestGateway(t, func(o *testOptions) { o.Client.MaxInFlight = 1000 })
	var reached sync.Map // id → channel closed when its request reaches the upstream
	tg.Upstream.setHandler(func(w http.ResponseWriter, r *http.Request) {
		if ch, ok := reached.LoadAndDelete(lastSegment(r.URL.Path)); ok {
			close(ch.(chan struct{}))
		}
		select {
		case <-time.After(200 * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		foundAnswer(w, r)
	})
	if resp, _ := tg.get(t, "/customers/warm/signup"); resp.StatusCode != 200 {
		t.Fatalf("warm-up status %d", resp.StatusCode)
	}
	baseline := settledGoroutines(tg, 0, 0)
	heapBefore := heapInUse()
	addr := strings.TrimPrefix(tg.URL, "http://")

	const rounds, perRound = 5, 100
	for round := range rounds {
		var wg sync.WaitGroup
		for i := range perRound {
			wg.Go(func() {
				conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					t.Error(err)
					return
				}
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				id := fmt.Sprintf("gone-%d-%d", round, i)
				if i%2 == 0 {
					// Half a request: the headers never end. The server
					// reads it until the hang-up.
					fmt.Fprintf(conn, "GET /customers/%s/signup HTTP/1.1\r\nHost: gw\r\nX-Partial: ", id)
					return
				}
				// A whole request, then a hang-up once the gateway is
				// calling the upstream for it, before the answer.
				ch := make(chan struct{})
				reached.Store(id, ch)
				fmt.Fprintf(conn, "GET /customers/%s/signup HTTP/1.1\r\nHost: gw\r\n\r\n", id)
				select {
				case <-ch:
				case <-time.After(5 * time.Second):
					t.Errorf("request %s did not reach the upstream within 5s", id)
				}
			})
		}
		wg.Wait()
	}

	// Every request the upstream answers after its caller left is still
	// cached, and nothing else stays: goroutines come back to where they
	// were, and the heap holds at most the cache's few hundred entries.
	wantGoroutinesBack(t, tg, baseline, 10*time.Second, "after the connections left")
	if grown := int64(heapInUse()) - int64(heapBefore); grown > 8<<20 {
		t.Errorf("heap in use grew by %d bytes", grown)
	}
	if got := metricValue(t, tg.Registry, metrics.InFlightRequests); got != 0 {
		t.Errorf("%s %v once the connections left; want 0", metrics.InFlightRequests, got)
	}
}
