package proxy

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bluetape/bluetape-gateway/metrics"
	"github.com/bluetape/bluetape-gateway/proxy/bluetape"
	"github.com/bluetape/bluetape-gateway/proxy/cache"
	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
	"github.com/bluetape/bluetape-gateway/proxy/ratelimit"
)

// Test credentials. They are long and distinctive so that a test can look
// for them anywhere the gateway writes.
const (
	testKey     = "test-key-5f0c2b1e9d7a4c38b6e1f2a3d4c5b6a7"
	testAccount = "test-account-8e7d6c5b4a39"
)

// upstreamCall is what the fake upstream received.
type upstreamCall struct {
	Method, Path, RawPath, Query, Host string
	Header                             http.Header
}

// fakeUpstream is a BlueTape stand-in whose answers a test chooses, and
// which records every request it receives.
type fakeUpstream struct {
	*httptest.Server
	calls atomic.Int64

	mu       sync.Mutex
	received []upstreamCall
	handler  http.HandlerFunc
}

// newFakeUpstream starts a fake upstream under the base path
// /genericBthubService. By default it answers 200 with a URL derived from
// the id.
func newFakeUpstream(t testing.TB) *fakeUpstream {
	t.Helper()
	f := &fakeUpstream{}
	f.handler = foundAnswer
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.calls.Add(1)
		f.mu.Lock()
		f.received = append(f.received, upstreamCall{Method: r.Method, Path: r.URL.Path, RawPath: r.URL.EscapedPath(),
			Query: r.URL.RawQuery, Host: r.Host, Header: r.Header.Clone()})
		h := f.handler
		f.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

// foundAnswer answers 200 with the id's URL, as the fake upstream does by
// default.
func foundAnswer(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"signUpUrl": "https://www.bluetape.com/signup?id=`+lastSegment(r.URL.Path)+`"}`)
}

// answerWith answers every request with status and the JSON body.
func answerWith(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

// notFoundBody is BlueTape's answer for an unknown customer.
const notFoundBody = `{"code": "404", "reason": "Customer not found."}`

// lastSegment returns the id of /.../customer/{id}/signup.
func lastSegment(p string) string {
	const suffix = "/signup"
	p = p[:len(p)-len(suffix)]
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[i+1:]
		}
	}
	return p
}

// setHandler replaces how the fake answers.
func (f *fakeUpstream) setHandler(h http.HandlerFunc) {
	f.mu.Lock()
	f.handler = h
	f.mu.Unlock()
}

// answer makes the fake answer every request with status and body.
func (f *fakeUpstream) answer(status int, body string) {
	f.setHandler(answerWith(status, body))
}

func (f *fakeUpstream) requests() []upstreamCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]upstreamCall(nil), f.received...)
}

func (f *fakeUpstream) baseURL(t testing.TB) *url.URL {
	u, err := url.Parse(f.URL + "/genericBthubService")
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// testOptions are a test gateway's options and its client's.
type testOptions struct {
	Options
	Client bluetape.Options
}

// testGateway is a gateway under test, served by an httptest server.
type testGateway struct {
	*Gateway
	URL      string
	Upstream *fakeUpstream
	Registry *prometheus.Registry
	Cache    *cache.Cache
	Clock    *gatewaytest.Clock
	Logs     *gatewaytest.LogBuffer
}

// testCacheOptions are the cache settings of a test gateway, unless a
// test gives its own: the default windows, over a small cache.
var testCacheOptions = cache.Options{TTL: 15 * time.Minute, NegativeTTL: 30 * time.Second, StaleTTL: 24 * time.Hour, MaxEntries: 1000}

// newTestGateway builds a gateway in front of a new fake upstream. Rate
// limiting is off unless edit turns it on; edit may change any option
// before the gateway is built. Cache options come from cacheOpts when
// given.
func newTestGateway(t testing.TB, edit func(*testOptions), cacheOpts ...cache.Options) *testGateway {
	t.Helper()
	up := newFakeUpstream(t)
	clock := gatewaytest.NewClock()
	co := testCacheOptions
	if len(cacheOpts) > 0 {
		co = cacheOpts[0]
	}
	co.Now = clock.Now
	c := cache.New(co)
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg, "test", func() float64 { return float64(c.Len()) })
	if err != nil {
		t.Fatal(err)
	}
	logs := &gatewaytest.LogBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	o := testOptions{
		Options: Options{
			Cache:   LocalCache(c),
			Limits:  LocalLimiter(ratelimit.New(ratelimit.Options{Now: clock.Now})),
			Metrics: m,
			Logger:  log,
		},
		Client: bluetape.Options{
			BaseURL:     up.baseURL(t),
			Credentials: func() (string, string) { return testKey, testAccount },
			Timeout:     2 * time.Second,
			Version:     "test",
			Metrics:     m,
		},
	}
	if edit != nil {
		edit(&o)
	}
	// The client logs where the gateway does, unless a test says otherwise.
	if o.Client.Logger == nil {
		o.Client.Logger = o.Logger
	}
	// And traces with the gateway's tracer.
	if o.Client.Tracer == nil {
		o.Client.Tracer = o.Tracer
	}
	if o.Upstream, err = bluetape.New(o.Client); err != nil {
		t.Fatal(err)
	}
	g, err := New(o.Options)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g.Handler())
	t.Cleanup(func() {
		srv.Close()
		o.Upstream.CloseIdleConnections()
	})
	return &testGateway{Gateway: g, URL: srv.URL, Upstream: up, Registry: reg, Cache: c, Clock: clock, Logs: logs}
}

// startAdmin serves tg's admin handler, as main builds it: over the cache
// tg answers from, with tg's logger and the token testAdminToken. It
// returns the admin listener's base URL.
func (tg *testGateway) startAdmin(t testing.TB) string {
	t.Helper()
	srv := httptest.NewServer(Admin(AdminOptions{Gatherer: tg.Registry, Ready: func() bool { return true },
		Cache: tg.Gateway.cache, Token: adminToken, Logger: tg.Gateway.log}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// get requests path from the gateway with the given header pairs.
func (tg *testGateway) get(t testing.TB, path string, header ...string) (*http.Response, string) {
	t.Helper()
	return tg.do(t, http.MethodGet, path, header...)
}

func (tg *testGateway) do(t testing.TB, method, path string, header ...string) (*http.Response, string) {
	t.Helper()
	return httpDo(t, method, tg.URL+path, header...)
}

// getStatus is a GET safe to call from any goroutine: it reports an error
// instead of failing the test. It returns the status once the body is
// read to its end.
func getStatus(url string, header ...string) (int, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, err
}

// httpDo sends a request with the given header pairs and returns the
// answer with its body read.
func httpDo(t testing.TB, method, url string, header ...string) (*http.Response, string) {
	t.Helper()
	return gatewaytest.Do(t, http.DefaultClient, method, url, header...)
}
