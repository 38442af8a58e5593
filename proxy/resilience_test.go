package proxy

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"

	"github.com/bluetape/bluetape-gateway/config"
	"github.com/bluetape/bluetape-gateway/metrics"
	"github.com/bluetape/bluetape-gateway/proxy/bluetape"
	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
)

// metricValue returns the value of the series of family name whose labels
// include the given name/value pairs (the count, for a histogram); 0 when
// there is no such series.
func metricValue(t *testing.T, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue series
				}
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// metricSum adds up every series of a counter family.
func metricSum(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range families {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// resetConnection answers by resetting the TCP connection: the peer sees
// ECONNRESET, as from a crashed upstream or a dropping load balancer.
func resetConnection(w http.ResponseWriter, _ *http.Request) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}

// hangUntilCancelled never answers; it returns when the gateway gives up.
func hangUntilCancelled(w http.ResponseWriter, r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-time.After(30 * time.Second):
	}
}

func TestRetriesOnlyTransientFailures(t *testing.T) {
	cases := map[string]struct {
		fail   http.HandlerFunc
		status int   // the answer when every attempt fails
		calls  int64 // upstream calls for one request
	}{
		"reset connection": {fail: resetConnection, status: 502, calls: bluetape.MaxAttempts},
		"502":              {fail: answerWith(502, `bad gateway`), status: 502, calls: bluetape.MaxAttempts},
		"503":              {fail: answerWith(503, `unavailable`), status: 502, calls: bluetape.MaxAttempts},
		"504":              {fail: answerWith(504, `gateway timeout`), status: 502, calls: bluetape.MaxAttempts},
		"500":              {fail: answerWith(500, `{"code": "500", "reason": "Unexpected error."}`), status: 502, calls: 1},
		"404":              {fail: answerWith(404, notFoundBody), status: 404, calls: 1},
		"400":              {fail: answerWith(400, `{"code": "400", "reason": "Bad id."}`), status: 400, calls: 1},
		"401":              {fail: answerWith(401, `{"code": "401", "reason": "Unauthorized."}`), status: 502, calls: 1},
		"403":              {fail: answerWith(403, `{"code": "403", "reason": "Forbidden."}`), status: 502, calls: 1},
		"429":              {fail: answerWith(429, `{"code": "429", "reason": "Slow down."}`), status: 503, calls: 1},
		"timeout":          {fail: hangUntilCancelled, status: 504, calls: 1},
		"garbage body":     {fail: answerWith(200, `<html>`), status: 502, calls: 1},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			tg := newTestGateway(t, func(o *testOptions) { o.Client.Timeout = 200 * time.Millisecond })
			tg.Upstream.setHandler(tc.fail)
			resp, body := tg.get(t, "/customers/c1/signup")
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d; want %d (%s)", resp.StatusCode, tc.status, body)
			}
			errorBodyOf(t, resp, body)
			if got := tg.Upstream.calls.Load(); got != tc.calls {
				t.Errorf("upstream calls %d; want %d", got, tc.calls)
			}
			if got := metricValue(t, tg.Registry, metrics.UpstreamRetriesTotal); got != float64(tc.calls-1) {
				t.Errorf("%s %v; want %d", metrics.UpstreamRetriesTotal, got, tc.calls-1)
			}
			if got := metricSum(t, tg.Registry, metrics.UpstreamRequestsTotal); got != float64(tc.calls) {
				t.Errorf("%s sums to %v; want %d", metrics.UpstreamRequestsTotal, got, tc.calls)
			}
		})
	}
}

func TestRetryRecoversFromOneFailure(t *testing.T) {
	for name, fail := range map[string]http.HandlerFunc{
		"reset connection": resetConnection,
		"502":              answerWith(502, ""),
		"503":              answerWith(503, ""),
		"504":              answerWith(504, ""),
	} {
		t.Run(name, func(t *testing.T) {
			tg := newTestGateway(t, nil)
			var n atomic.Int64
			tg.Upstream.setHandler(func(w http.ResponseWriter, r *http.Request) {
				if n.Add(1) == 1 {
					fail(w, r)
					return
				}
				foundAnswer(w, r)
			})
			resp, body := tg.get(t, "/customers/c1/signup")
			if resp.StatusCode != 200 || !strings.Contains(body, "id=c1") {
				t.Fatalf("status %d (%s); want 200 for c1", resp.StatusCode, body)
			}
			if got := tg.Upstream.calls.Load(); got != 2 {
				t.Errorf("upstream calls %d; want 2", got)
			}
			if got := metricValue(t, tg.Registry, metrics.UpstreamRetriesTotal); got != 1 {
				t.Errorf("retries %v; want 1", got)
			}
		})
	}
}

// An upstream that fails slowly must not keep a request past its
// deadline: retries stop when the time left cannot fit one.
func TestRetriesStayWithinDeadline(t *testing.T) {
	const timeout = 300 * time.Millisecond
	tg := newTestGateway(t, func(o *testOptions) { o.Client.Timeout = timeout })
	tg.Upstream.setHandler(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(timeout * 6 / 10):
			w.WriteHeader(http.StatusServiceUnavailable)
		case <-r.Context().Done():
		}
	})
	start := time.Now()
	resp, body := tg.get(t, "/customers/slow/signup")
	elapsed := time.Since(start)
	if resp.StatusCode != 502 && resp.StatusCode != 504 {
		t.Fatalf("status %d; want 502 or 504 (%s)", resp.StatusCode, body)
	}
	// The budget is two attempts' worth; allow for scheduling under -race.
	if limit := tg.upstream.Budget() + 250*time.Millisecond; elapsed > limit {
		t.Errorf("answered after %v; want at most %v", elapsed, limit)
	}
	if calls := tg.Upstream.calls.Load(); calls < 2 || calls > bluetape.MaxAttempts {
		t.Errorf("upstream calls %d; want 2 to %d", calls, bluetape.MaxAttempts)
	}
}

// neverTrip keeps the breaker closed, so that a test sees the retry
// budget alone.
func neverTrip(gobreaker.Counts) bool { return false }

func TestRetryBudgetStopsRetriesInOutage(t *testing.T) {
	tg := newTestGateway(t, func(o *testOptions) { o.Client.Breaker = bluetape.BreakerSettings{Trip: neverTrip} })
	tg.Upstream.answer(503, "down")
	var perRequest []int64
	for i := range 12 {
		before := tg.Upstream.calls.Load()
		resp, body := tg.get(t, fmt.Sprintf("/customers/outage-%d/signup", i))
		if resp.StatusCode != 502 {
			t.Fatalf("request %d: status %d; want 502 (%s)", i, resp.StatusCode, body)
		}
		perRequest = append(perRequest, tg.Upstream.calls.Load()-before)
	}
	// Ten tokens, one spent per failed attempt, retries while more than
	// five are left: 3 calls, then 2, then 1 for good.
	want := []int64{3, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}
	if fmt.Sprint(perRequest) != fmt.Sprint(want) {
		t.Errorf("upstream calls per request %v; want %v", perRequest, want)
	}
	if got := metricValue(t, tg.Registry, metrics.UpstreamRetriesTotal); got != 3 {
		t.Errorf("retries %v; want 3", got)
	}

	// Successes earn the budget back: a tenth of a token each.
	tg.Upstream.setHandler(foundAnswer)
	for i := range 80 {
		if resp, body := tg.get(t, fmt.Sprintf("/customers/back-%d/signup", i)); resp.StatusCode != 200 {
			t.Fatalf("status %d (%s)", resp.StatusCode, body)
		}
	}
	tg.Upstream.answer(503, "down")
	before := tg.Upstream.calls.Load()
	tg.get(t, "/customers/after/signup")
	if got := tg.Upstream.calls.Load() - before; got != bluetape.MaxAttempts {
		t.Errorf("after recovery, upstream calls %d; want %d (retries resumed)", got, bluetape.MaxAttempts)
	}
}

// In a partial outage (one id in five failing) the breaker stays closed,
// and the budget alone stops the retries from tripling the failing load.
func TestRetryBudgetInPartialOutage(t *testing.T) {
	tg := newTestGateway(t, nil)
	tg.Upstream.setHandler(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(lastSegment(r.URL.Path), "bad-") {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		foundAnswer(w, r)
	})
	var badCalls []int64
	for i := range 20 {
		before := tg.Upstream.calls.Load()
		if resp, _ := tg.get(t, fmt.Sprintf("/customers/bad-%d/signup", i)); resp.StatusCode != 502 {
			t.Fatalf("bad-%d: status %d; want 502", i, resp.StatusCode)
		}
		badCalls = append(badCalls, tg.Upstream.calls.Load()-before)
		for j := range 4 {
			if resp, _ := tg.get(t, fmt.Sprintf("/customers/ok-%d-%d/signup", i, j)); resp.StatusCode != 200 {
				t.Fatalf("ok-%d-%d: status %d; want 200", i, j, resp.StatusCode)
			}
		}
	}
	if badCalls[0] != bluetape.MaxAttempts {
		t.Errorf("first failing request made %d calls; want %d", badCalls[0], bluetape.MaxAttempts)
	}
	for i, n := range badCalls[10:] {
		if n != 1 {
			t.Errorf("failing request %d made %d calls; want 1 once the budget is spent (all: %v)", i+10, n, badCalls)
			break
		}
	}
	if got := metricValue(t, tg.Registry, metrics.CircuitBreakerState); got != 0 {
		t.Errorf("breaker state %v; want 0 (closed)", got)
	}
}

// tripBreaker sends failing requests until the breaker refuses one, and
// returns that refusal.
func (tg *testGateway) tripBreaker(t *testing.T) (*http.Response, string) {
	t.Helper()
	tg.Upstream.answer(502, "down")
	for i := range 10 {
		resp, body := tg.get(t, fmt.Sprintf("/customers/trip-%d/signup", i))
		if resp.StatusCode == 503 {
			return resp, body
		}
		if resp.StatusCode != 502 {
			t.Fatalf("status %d while tripping; want 502 (%s)", resp.StatusCode, body)
		}
	}
	t.Fatal("the breaker did not open after 10 failing requests")
	return nil, ""
}

func TestBreakerOpensOnSustainedFailure(t *testing.T) {
	tg := newTestGateway(t, func(o *testOptions) { o.Client.Breaker = bluetape.BreakerSettings{OpenFor: time.Hour} })
	resp, body := tg.tripBreaker(t)
	errorBodyOf(t, resp, body)
	if ra := resp.Header.Get("Retry-After"); ra != "3600" {
		t.Errorf("Retry-After %q; want 3600, the time left open", ra)
	}
	// Five failures in a row: three attempts, then two.
	if got := tg.Upstream.calls.Load(); got != 5 {
		t.Errorf("upstream calls before opening %d; want 5", got)
	}
	if got := metricValue(t, tg.Registry, metrics.CircuitBreakerState); got != 2 {
		t.Errorf("breaker state %v; want 2 (open)", got)
	}
	calls := tg.Upstream.calls.Load()
	for i := range 20 {
		start := time.Now()
		resp, body := tg.get(t, fmt.Sprintf("/customers/held-%d/signup", i))
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("status %d, Retry-After %q; want 503 with Retry-After (%s)",
				resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("open breaker answered after %v; want at once", d)
		}
	}
	if got := tg.Upstream.calls.Load(); got != calls {
		t.Errorf("upstream calls grew from %d to %d while the breaker was open", calls, got)
	}
	if !strings.Contains(tg.Logs.String(), `"msg":"upstream circuit breaker changed state","state":"open"`) {
		t.Error("the opening is not logged")
	}
}

func TestBreakerRetryAfterByDefault(t *testing.T) {
	tg := newTestGateway(t, nil)
	resp, _ := tg.tripBreaker(t)
	ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || ra < 1 || ra > int(bluetape.BreakerOpenFor/time.Second) {
		t.Errorf("Retry-After %q; want 1 to %d", resp.Header.Get("Retry-After"), int(bluetape.BreakerOpenFor/time.Second))
	}
}

func TestBreakerHalfOpensThenCloses(t *testing.T) {
	tg := newTestGateway(t, func(o *testOptions) { o.Client.Breaker = bluetape.BreakerSettings{OpenFor: 100 * time.Millisecond} })
	tg.tripBreaker(t)
	// No request is needed for the gauge to show the half-open state.
	gatewaytest.WaitFor(t, 5*time.Second, "the half-open state", func() bool {
		return metricValue(t, tg.Registry, metrics.CircuitBreakerState) == 1
	})
	tg.Upstream.setHandler(foundAnswer)
	calls := tg.Upstream.calls.Load()
	resp, body := tg.get(t, "/customers/probe/signup")
	if resp.StatusCode != 200 {
		t.Fatalf("probe: status %d; want 200 (%s)", resp.StatusCode, body)
	}
	if got := tg.Upstream.calls.Load() - calls; got != 1 {
		t.Errorf("probe made %d upstream calls; want 1", got)
	}
	if got := metricValue(t, tg.Registry, metrics.CircuitBreakerState); got != 0 {
		t.Errorf("breaker state %v after a good probe; want 0 (closed)", got)
	}
	if resp, _ := tg.get(t, "/customers/after/signup"); resp.StatusCode != 200 {
		t.Errorf("after closing: status %d; want 200", resp.StatusCode)
	}
}

func TestBreakerReopensWhenProbeFails(t *testing.T) {
	tg := newTestGateway(t, func(o *testOptions) { o.Client.Breaker = bluetape.BreakerSettings{OpenFor: 100 * time.Millisecond} })
	tg.tripBreaker(t)
	gatewaytest.WaitFor(t, 5*time.Second, "the half-open state", func() bool {
		return metricValue(t, tg.Registry, metrics.CircuitBreakerState) == 1
	})
	calls := tg.Upstream.calls.Load()
	resp, body := tg.get(t, "/customers/probe/signup")
	if resp.StatusCode != 502 && resp.StatusCode != 503 {
		t.Fatalf("failed probe: status %d; want 502 or 503 (%s)", resp.StatusCode, body)
	}
	if got := tg.Upstream.calls.Load() - calls; got != 1 {
		t.Errorf("half-open breaker let %d calls through; want 1 probe", got)
	}
	if got := metricValue(t, tg.Registry, metrics.CircuitBreakerState); got != 2 {
		t.Errorf("breaker state %v after a failed probe; want 2 (open)", got)
	}
}

// While the breaker holds requests back, an id with an expired entry is
// still answered from it.
func TestOpenBreakerServesStale(t *testing.T) {
	tg := newTestGateway(t, func(o *testOptions) { o.Client.Breaker = bluetape.BreakerSettings{OpenFor: time.Hour} })
	if resp, _ := tg.get(t, "/customers/known/signup"); resp.StatusCode != 200 {
		t.Fatalf("warming: status %d", resp.StatusCode)
	}
	tg.Clock.Advance(16 * time.Minute) // past the 15m TTL, within the stale window
	tg.tripBreaker(t)
	calls := tg.Upstream.calls.Load()
	resp, body := tg.get(t, "/customers/known/signup")
	if resp.StatusCode != 200 || resp.Header.Get("X-Cache") != "STALE" || !strings.Contains(body, "id=known") {
		t.Fatalf("status %d, X-Cache %q (%s); want 200 STALE for known", resp.StatusCode, resp.Header.Get("X-Cache"), body)
	}
	if tg.Upstream.calls.Load() != calls {
		t.Error("the open breaker let a call through")
	}
}

// keyChecker is a fake BlueTape's credential check: it accepts the keys
// it is told to, answers 401 to any other, and counts what it saw.
type keyChecker struct {
	keySet
	mu   sync.Mutex
	seen map[string]int
}

// keySet is the set of API keys a fake BlueTape accepts. It is safe for
// concurrent use.
type keySet struct {
	keysMu   sync.Mutex
	accepted map[string]bool
}

// accept replaces the keys accepted by keys.
func (k *keySet) accept(keys ...string) {
	k.keysMu.Lock()
	defer k.keysMu.Unlock()
	k.accepted = map[string]bool{}
	for _, key := range keys {
		k.accepted[key] = true
	}
}

// accepts reports whether the header values are one key, an accepted one.
func (k *keySet) accepts(values []string) bool {
	k.keysMu.Lock()
	defer k.keysMu.Unlock()
	return len(values) == 1 && k.accepted[values[0]]
}

func (k *keyChecker) count(key string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.seen[key]
}

func (k *keyChecker) handler(account string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		keys := r.Header.Values("X-Bluetape-Key")
		k.mu.Lock()
		if k.seen == nil {
			k.seen = map[string]int{}
		}
		ok := k.accepts(keys) &&
			len(r.Header.Values("X-Integration-Accountid")) == 1 && r.Header.Get("X-Integration-Accountid") == account
		if len(keys) == 1 {
			k.seen[keys[0]]++
		}
		k.mu.Unlock()
		if !ok {
			answerWith(401, `{"code": "401", "reason": "Unauthorized."}`)(w, r)
			return
		}
		foundAnswer(w, r)
	}
}

// A key rotated through the kubelet's `..data` swap takes effect on the
// next upstream call, while requests keep flowing and none fails; a
// rotation to an empty file keeps the last good key.
func TestSecretRotationUnderTraffic(t *testing.T) {
	const oldKey, newKey, account = "key-old-3c1d9a", "key-new-7e2b4f", "acct-42"
	vol := gatewaytest.NewSecretVolume(t, map[string]string{"api-key": oldKey + "\n", "account-id": account + "\n"})
	key, err := config.NewSecretSource("", vol.Path("api-key"))
	if err != nil {
		t.Fatal(err)
	}
	acct, err := config.NewSecretSource("", vol.Path("account-id"))
	if err != nil {
		t.Fatal(err)
	}
	var reloadErrs atomic.Int64
	// poll reloads both secret files, as main does every second.
	poll := func() {
		for _, s := range []*config.SecretSource{key, acct} {
			s.Poll(func(_ bool, err error) {
				if err != nil {
					reloadErrs.Add(1)
				}
			})
		}
	}

	tg := newTestGateway(t, func(o *testOptions) {
		o.Client.Credentials = func() (string, string) { return key.Get().Reveal(), acct.Get().Reveal() }
	})
	checker := &keyChecker{}
	checker.accept(oldKey)
	tg.Upstream.setHandler(checker.handler(account))

	// traffic sends requests for new ids (cache misses) from four
	// goroutines until the stop it returns is called, which reports every
	// non-200.
	var seq atomic.Int64
	traffic := func() (stop func() []string) {
		var mu sync.Mutex
		var failures []string
		halt := gatewaytest.Hammer(4, func(int) bool {
			id := fmt.Sprintf("rot-%d", seq.Add(1))
			resp, err := http.Get(tg.URL + "/customers/" + id + "/signup")
			if err != nil {
				mu.Lock()
				failures = append(failures, err.Error())
				mu.Unlock()
				return true
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.Contains(string(body), "id="+id+`"`) {
				mu.Lock()
				failures = append(failures, fmt.Sprintf("%s: %d %s", id, resp.StatusCode, body))
				mu.Unlock()
			}
			return true
		})
		t.Cleanup(halt)
		return func() []string { halt(); return failures }
	}

	// During the swap BlueTape accepts both keys, as in a real rotation.
	stop := traffic()
	gatewaytest.WaitFor(t, 5*time.Second, "traffic with the old key", func() bool { return checker.count(oldKey) >= 10 })
	checker.accept(oldKey, newKey)
	vol.Update(map[string]string{"api-key": newKey + "\n", "account-id": account + "\n"})
	gatewaytest.WaitFor(t, 10*time.Second, "the new key upstream", func() bool { poll(); return checker.count(newKey) >= 10 })
	if failures := stop(); len(failures) > 0 {
		t.Fatalf("%d requests failed during the rotation, first: %s", len(failures), failures[0])
	}

	// From now on only the new key is good.
	checker.accept(newKey)
	stop = traffic()
	gatewaytest.WaitFor(t, 5*time.Second, "traffic after the rotation", func() bool { return checker.count(newKey) >= 30 })
	// A rotation that leaves an empty file is refused: the new key stays.
	vol.Update(map[string]string{"api-key": "\n", "account-id": account + "\n"})
	gatewaytest.WaitFor(t, 10*time.Second, "the failed reload to be reported", func() bool { poll(); return reloadErrs.Load() > 0 })
	n := checker.count(newKey)
	gatewaytest.WaitFor(t, 5*time.Second, "traffic after the failed reload", func() bool { return checker.count(newKey) >= n+20 })
	if failures := stop(); len(failures) > 0 {
		t.Fatalf("%d requests failed after the rotation, first: %s", len(failures), failures[0])
	}
	if got := reloadErrs.Load(); got != 1 {
		t.Errorf("reload errors reported %d times; want once for one bad content", got)
	}
	if got := key.Get().Reveal(); got != newKey {
		t.Errorf("key in force %q; want the last good one", got)
	}
}
