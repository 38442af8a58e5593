package bluetape

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"

	"github.com/bluetape/bluetape-gateway/metrics"
	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
)

const (
	testKey     = "test-key-5f0c2b1e9d7a4c38b6e1f2a3d4c5b6a7"
	testAccount = "test-account-8e7d6c5b4a39"
)

// newTestClient starts an httptest upstream answering with h and returns
// a client of it; edit may change the options before the client is built.
func newTestClient(t testing.TB, h http.HandlerFunc, edit func(*Options)) (*Client, *atomic.Int64) {
	t.Helper()
	var calls atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		h(w, r)
	}))
	t.Cleanup(up.Close)
	base, err := url.Parse(up.URL + "/genericBthubService")
	if err != nil {
		t.Fatal(err)
	}
	m, err := metrics.New(prometheus.NewRegistry(), "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	o := Options{
		BaseURL:     base,
		Credentials: func() (string, string) { return testKey, testAccount },
		Timeout:     2 * time.Second,
		Version:     "test",
		Metrics:     m,
		Logger:      slog.New(slog.DiscardHandler),
	}
	if edit != nil {
		edit(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c, &calls
}

func answer(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

func TestFetchSendsOneRequestWithTheCredentials(t *testing.T) {
	var got *http.Request
	c, _ := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		got = r.Clone(r.Context())
		answer(200, `{"signUpUrl": "https://www.bluetape.com/signup?id=97bee7a043b58084"}`)(w, r)
	}, nil)
	body, err := c.Fetch(t.Context(), "a.b~c", "req-1")
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"signUpUrl":"https://www.bluetape.com/signup?id=97bee7a043b58084"}`; string(body) != want {
		t.Errorf("body %s; want %s", body, want)
	}
	if got.Method != http.MethodGet || got.URL.EscapedPath() != "/genericBthubService/integration/customer/a.b~c/signup" {
		t.Errorf("request %s %s", got.Method, got.URL.EscapedPath())
	}
	for name, want := range map[string]string{
		"X-Bluetape-Key": testKey, "X-Integration-Accountid": testAccount,
		"Content-Type": "application/json", "X-Request-Id": "req-1", "User-Agent": "bluetape-gateway/test",
	} {
		if v := got.Header.Values(name); len(v) != 1 || v[0] != want {
			t.Errorf("%s: %q; want exactly %q", name, v, want)
		}
	}
}

// TestFetchErrors pins the one error type's fields for each upstream
// answer the contract names.
func TestFetchErrors(t *testing.T) {
	cases := map[string]struct {
		h          http.HandlerFunc
		status     int
		outcome    string
		reason     string
		retryAfter time.Duration
	}{
		"404": {h: answer(404, `{"code": "404", "reason": "Customer not found."}`), status: 404, outcome: "404", reason: ReasonNotFound},
		"400": {h: answer(400, `{"code": "400", "reason": "Bad id <x>."}`), status: 400, outcome: "400", reason: "Bad id <x>."},
		"401": {h: answer(401, ``), status: 502, outcome: "401", reason: reasonCredentials},
		"403": {h: answer(403, ``), status: 502, outcome: "403", reason: reasonCredentials},
		"429": {h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "7")
			answer(429, ``)(w, r)
		}, status: 503, outcome: "429", reason: reasonBusy, retryAfter: 7 * time.Second},
		"500":      {h: answer(500, `{"code": "500"}`), status: 502, outcome: "500", reason: reasonFailed},
		"redirect": {h: answer(302, ``), status: 502, outcome: "302", reason: reasonFailed},
		"bad 200":  {h: answer(200, `{"signUpUrl": "javascript:alert(1)"}`), status: 502, outcome: "200", reason: reasonFailed},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c, calls := newTestClient(t, tc.h, nil)
			_, err := c.Fetch(t.Context(), "abc", "")
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v (%T); want *Error", err, err)
			}
			if e.Status != tc.status || e.Outcome != tc.outcome || e.Reason != tc.reason || e.RetryAfter != tc.retryAfter {
				t.Errorf("got {%d %q %q %v}; want {%d %q %q %v}", e.Status, e.Outcome, e.Reason, e.RetryAfter,
					tc.status, tc.outcome, tc.reason, tc.retryAfter)
			}
			if calls.Load() != 1 {
				t.Errorf("upstream calls %d; want 1 (no retry)", calls.Load())
			}
		})
	}
}

func TestFetchRetriesTransientFailures(t *testing.T) {
	var n atomic.Int64
	c, calls := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			answer(503, ``)(w, r)
			return
		}
		answer(200, `{"signUpUrl": "https://a.example/"}`)(w, r)
	}, nil)
	if _, err := c.Fetch(t.Context(), "abc", ""); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 2 {
		t.Errorf("upstream calls %d; want 2", calls.Load())
	}
}

func TestFetchTimeoutIs504(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	c, _ := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}, func(o *Options) { o.Timeout = 50 * time.Millisecond })
	_, err := c.Fetch(t.Context(), "abc", "")
	var e *Error
	if !errors.As(err, &e) || e.Status != http.StatusGatewayTimeout || e.Outcome != "timeout" || !e.Failed() {
		t.Fatalf("error %v; want a 504 with outcome timeout", err)
	}
}

func TestFetchRefusedIs502(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, _ := newTestClient(t, answer(200, ``), func(o *Options) { o.BaseURL.Host = addr })
	_, err = c.Fetch(t.Context(), "abc", "")
	var e *Error
	if !errors.As(err, &e) || e.Status != http.StatusBadGateway || e.Outcome != "error" {
		t.Fatalf("error %v; want a 502 with outcome error", err)
	}
}

// TestBreakerOpensAndRetryAfterFollowsTheClock checks that the open
// breaker refuses without calling, with a Retry-After counted on the
// injected clock.
func TestBreakerOpensAndRetryAfterFollowsTheClock(t *testing.T) {
	clock := gatewaytest.NewClock()
	c, calls := newTestClient(t, answer(500, ``), func(o *Options) {
		o.Now = clock.Now
		o.Breaker = BreakerSettings{OpenFor: time.Hour, Trip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= 2 }}
	})
	for range 2 {
		if _, err := c.Fetch(t.Context(), "abc", ""); err == nil {
			t.Fatal("want an error")
		}
	}
	before := calls.Load()
	clock.Advance(20 * time.Minute)
	_, err := c.Fetch(t.Context(), "abc", "")
	var e *Error
	if !errors.As(err, &e) || e.Status != http.StatusServiceUnavailable || e.Outcome != "" || !errors.Is(err, errBreakerOpen) {
		t.Fatalf("error %v; want the open breaker's 503", err)
	}
	if e.RetryAfter != 40*time.Minute {
		t.Errorf("Retry-After %v; want 40m", e.RetryAfter)
	}
	if calls.Load() != before {
		t.Error("the open breaker let a call through")
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"": time.Second, "x": time.Second, "-5": time.Second, "0": time.Second, "30": 30 * time.Second,
		"100000":                        5 * time.Minute,
		"Thu, 01 Jan 2026 12:01:00 GMT": time.Minute,
		"Thu, 01 Jan 2026 11:00:00 GMT": time.Second,
	} {
		if got := parseRetryAfter(v, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v; want %v", v, got, want)
		}
	}
}
