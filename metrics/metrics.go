// Package metrics defines the gateway's Prometheus metrics. The names,
// types and labels of the contract's metrics are fixed: dashboards and
// alerts rely on them. No label ever takes a value chosen by a caller
// (customer id, IP address, token or path): codes, outcomes and results come
// from small fixed sets, and caller names from the operator's registry.
package metrics

import (
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
)

const namespace = "bluetape_gateway"

// The full names of the gateway's metric families.
const (
	RequestsTotal           = namespace + "_requests_total"
	RequestDuration         = namespace + "_request_duration_seconds"
	UpstreamRequestsTotal   = namespace + "_upstream_requests_total"
	UpstreamRequestDuration = namespace + "_upstream_request_duration_seconds"
	CacheLookupsTotal       = namespace + "_cache_lookups_total"
	CacheEntries            = namespace + "_cache_entries"
	RateLimitedTotal        = namespace + "_rate_limited_total"
	InFlightRequests        = namespace + "_in_flight_requests"
	CircuitBreakerState     = namespace + "_circuit_breaker_state"
	SecretReloadErrorsTotal = namespace + "_secret_reload_errors_total"
	RedisErrorsTotal        = namespace + "_redis_errors_total"
	UpstreamRetriesTotal    = namespace + "_upstream_retries_total"
	UpstreamInFlight        = namespace + "_upstream_in_flight"
	JWKSFetchErrorsTotal    = namespace + "_jwks_fetch_errors_total"
	BuildInfo               = namespace + "_build_info"
)

// Names returns the name of every metric family the gateway registers
// itself, not counting the Go runtime and process collectors.
func Names() []string {
	return []string{
		RequestsTotal, RequestDuration, UpstreamRequestsTotal, UpstreamRequestDuration,
		CacheLookupsTotal, CacheEntries, RateLimitedTotal, InFlightRequests,
		CircuitBreakerState, SecretReloadErrorsTotal, RedisErrorsTotal,
		UpstreamRetriesTotal, JWKSFetchErrorsTotal, BuildInfo, UpstreamInFlight,
	}
}

// Request durations span a cache hit, answered in tens of microseconds,
// to a miss whose upstream call, retries included, may take two attempts'
// time (10s with the default GATEWAY_UPSTREAM_TIMEOUT of 5s), so the
// buckets start at 50µs and reach 10s, about three per decade: fine enough
// below a millisecond to see the cache's latency move, and around the
// upstream's usual 20–500ms to read its p99.
var requestBuckets = []float64{
	0.00005, 0.0001, 0.00025, 0.0005,
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	0.1, 0.25, 0.5, 1, 2.5, 5, 10,
}

// Upstream calls cross a network to BlueTape: a few milliseconds at best,
// seconds when it struggles, and never more than the per-attempt timeout
// (5s by default; operators may raise it), so the buckets run from 5ms to
// 30s and carry no sub-millisecond detail.
var upstreamBuckets = []float64{
	0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
}

// Cache lookup results, the values of the result label.
const (
	CacheHit         = "hit"
	CacheMiss        = "miss"
	CacheStale       = "stale"
	CacheNegativeHit = "negative_hit"
)

// Metrics holds the gateway's collectors. Its methods are safe for
// concurrent use.
type Metrics struct {
	requests         *prometheus.CounterVec
	requestDuration  *prometheus.HistogramVec
	upstream         *prometheus.CounterVec
	upstreamDuration *prometheus.HistogramVec
	cacheLookups     *prometheus.CounterVec
	rateLimited      *prometheus.CounterVec
	inFlight         prometheus.Gauge
	upstreamInFlight prometheus.Gauge
	breakerState     prometheus.Gauge
	secretReloadErrs *prometheus.CounterVec
	redisErrors      prometheus.Counter
	retries          prometheus.Counter
	jwksFetchErrors  prometheus.Counter

	// byCode caches the request series of each status code, and
	// byOutcome the upstream series of each outcome (a status code, or
	// outcomeTimeout and outcomeError), so that no request hashes a label
	// value.
	byCode, byOutcome [600]atomic.Pointer[codeSeries]
	mu                sync.Mutex
	now               func() time.Time // the exemplar gates' clock

	hit, miss, stale, negativeHit prometheus.Counter
}

type codeSeries struct {
	count    prometheus.Counter
	duration prometheus.Observer
	gate     exemplarGate
}

// New creates the gateway's metrics and registers them with reg.
// cacheEntries, if not nil, is read at each scrape for the cache size.
func New(reg prometheus.Registerer, version string, cacheEntries func() float64) (*Metrics, error) {
	m := &Metrics{
		now: time.Now,
		requests: counterVec("requests_total", "code",
			"API requests answered, by the HTTP status returned."),
		requestDuration: histogramVec("request_duration_seconds", "code", requestBuckets,
			"Time to answer an API request, by the HTTP status returned."),
		upstream: counterVec("upstream_requests_total", "outcome",
			"Requests sent to BlueTape, by outcome: the upstream status, timeout or error."),
		upstreamDuration: histogramVec("upstream_request_duration_seconds", "outcome", upstreamBuckets,
			"Time of one request to BlueTape, by outcome."),
		cacheLookups: counterVec("cache_lookups_total", "result",
			"Cache lookups by result: hit, miss, stale or negative_hit."),
		rateLimited: counterVec("rate_limited_total", "caller",
			"Requests refused with 429, by caller name (anonymous without a callers file)."),
		inFlight: gauge("in_flight_requests",
			"API requests being served now."),
		breakerState: gauge("circuit_breaker_state",
			"State of the upstream circuit breaker: 0 closed, 1 half-open, 2 open."),
		secretReloadErrs: counterVec("secret_reload_errors_total", "secret",
			"Reloads of a secret file that failed; the last good value stays in force."),
		redisErrors: counter("redis_errors_total",
			"Redis operations that failed or timed out; the replica fell back to its own state."),
		retries: counter("upstream_retries_total",
			"Upstream requests that were retries of a failed attempt."),
		upstreamInFlight: gauge("upstream_in_flight",
			"Upstream calls in progress now, retries included, calls kept running for callers that went away too."),
		jwksFetchErrors: counter("jwks_fetch_errors_total",
			"Fetches of the token issuer's discovery document or key set that failed; the last good keys stay in force."),
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help:        "Always 1; the labels tell the running version.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	build.Set(1)
	if cacheEntries == nil {
		cacheEntries = func() float64 { return 0 }
	}
	entries := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace, Name: "cache_entries",
		Help: "Customer ids held in the cache, positive and negative.",
	}, cacheEntries)

	for _, c := range []prometheus.Collector{
		m.requests, m.requestDuration, m.upstream, m.upstreamDuration,
		m.cacheLookups, entries, m.rateLimited, m.inFlight, m.breakerState,
		m.secretReloadErrs, m.redisErrors, m.retries, m.jwksFetchErrors, build, m.upstreamInFlight,
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	// The secrets' reload errors start at zero, so that increase() sees
	// the first failure.
	for _, secret := range []string{"api_key", "account_id", "callers", "admin_token", "redis_url"} {
		m.secretReloadErrs.WithLabelValues(secret)
	}
	m.hit = m.cacheLookups.WithLabelValues(CacheHit)
	m.miss = m.cacheLookups.WithLabelValues(CacheMiss)
	m.stale = m.cacheLookups.WithLabelValues(CacheStale)
	m.negativeHit = m.cacheLookups.WithLabelValues(CacheNegativeHit)
	return m, nil
}

// The constructors below give every metric the gateway's namespace.

func counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help})
}

func counterVec(name, label, help string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, []string{label})
}

func gauge(name, help string) prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help})
}

func histogramVec(name, label string, buckets []float64, help string) *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: name, Help: help, Buckets: buckets}, []string{label})
}

func (m *Metrics) series(code int) *codeSeries {
	if code < 100 || code >= len(m.byCode) {
		code = 500
	}
	if s := m.byCode[code].Load(); s != nil {
		return s
	}
	return m.newSeries(&m.byCode[code], strconv.Itoa(code), m.requests, m.requestDuration, requestBuckets)
}

// The indexes of byOutcome that are not status codes.
const (
	outcomeTimeout = 0
	outcomeError   = 1
)

// upstreamSeries returns the series of an upstream outcome; any value but
// a three-digit status and "timeout" is counted as "error", so that the
// label keeps to its fixed set.
func (m *Metrics) upstreamSeries(outcome string) *codeSeries {
	i, label := outcomeError, "error"
	switch code, err := strconv.Atoi(outcome); {
	case outcome == "timeout":
		i, label = outcomeTimeout, outcome
	case err == nil && validOutcome(outcome): // a status, 100 to 599
		i, label = code, outcome
	}
	if s := m.byOutcome[i].Load(); s != nil {
		return s
	}
	return m.newSeries(&m.byOutcome[i], label, m.upstream, m.upstreamDuration, upstreamBuckets)
}

func (m *Metrics) newSeries(p *atomic.Pointer[codeSeries], label string, count *prometheus.CounterVec, duration *prometheus.HistogramVec, bounds []float64) *codeSeries {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := p.Load(); s != nil {
		return s
	}
	s := &codeSeries{
		count:    count.WithLabelValues(label),
		duration: duration.WithLabelValues(label),
		gate:     exemplarGate{now: m.now, bounds: bounds, last: make([]atomic.Int64, len(bounds)+1)},
	}
	p.Store(s)
	return s
}

// Request records one answered API request.
func (m *Metrics) Request(code int, d time.Duration) {
	s := m.series(code)
	s.count.Inc()
	s.duration.Observe(d.Seconds())
}

// RequestWithExemplar records one answered API request and attaches the
// request id as an exemplar, linking the duration bucket to its log line.
// It allocates, so the gateway uses it only off the cache-hit path.
func (m *Metrics) RequestWithExemplar(code int, d time.Duration, requestID string) {
	m.series(code).observe(d, "request_id", requestID)
}

// RequestWithTrace records one answered API request that was sampled for
// tracing and attaches its trace id (trace_id) as an exemplar, linking the
// duration bucket to the trace.
func (m *Metrics) RequestWithTrace(code int, d time.Duration, traceID string) {
	m.series(code).observe(d, "trace_id", traceID)
}

// Upstream records one request sent to BlueTape. outcome is the upstream
// status code, "timeout" or "error"; any other value is counted as
// "error", so that the label keeps to its fixed set.
func (m *Metrics) Upstream(outcome string, d time.Duration, requestID string) {
	m.upstreamSeries(outcome).observe(d, "request_id", requestID)
}

// UpstreamWithTrace is Upstream for a request sampled for tracing: the
// exemplar is its trace id (trace_id).
func (m *Metrics) UpstreamWithTrace(outcome string, d time.Duration, traceID string) {
	m.upstreamSeries(outcome).observe(d, "trace_id", traceID)
}

// validOutcome reports whether outcome is a value of the outcome label: a
// three-digit status, "timeout" or "error".
func validOutcome(outcome string) bool {
	if outcome == "timeout" || outcome == "error" {
		return true
	}
	return len(outcome) == 3 && '1' <= outcome[0] && outcome[0] <= '5' &&
		'0' <= outcome[1] && outcome[1] <= '9' && '0' <= outcome[2] && outcome[2] <= '9'
}

// CacheLookup counts one cache lookup; result is one of the Cache* values.
func (m *Metrics) CacheLookup(result string) {
	switch result {
	case CacheHit:
		m.hit.Inc()
	case CacheMiss:
		m.miss.Inc()
	case CacheStale:
		m.stale.Inc()
	case CacheNegativeHit:
		m.negativeHit.Inc()
	}
}

// RateLimited counts one request refused with 429 for caller.
func (m *Metrics) RateLimited(caller string) { m.rateLimited.WithLabelValues(caller).Inc() }

// UpstreamInFlight returns the gauge of upstream calls in progress.
func (m *Metrics) UpstreamInFlight() prometheus.Gauge { return m.upstreamInFlight }

// InFlight returns the gauge of requests being served.
func (m *Metrics) InFlight() prometheus.Gauge { return m.inFlight }

// BreakerState sets the circuit breaker state: 0 closed, 1 half-open, 2 open.
func (m *Metrics) BreakerState(state int) { m.breakerState.Set(float64(state)) }

// SecretReloadError counts a failed reload of the named secret file
// (api_key, account_id, callers, admin_token or redis_url).
func (m *Metrics) SecretReloadError(secret string) { m.secretReloadErrs.WithLabelValues(secret).Inc() }

// RedisError counts a failed Redis operation.
func (m *Metrics) RedisError() { m.redisErrors.Inc() }

// Retry counts an upstream retry.
func (m *Metrics) Retry() { m.retries.Inc() }

// JWKSFetchError counts a failed fetch of the token issuer's discovery
// document or key set.
func (m *Metrics) JWKSFetchError() { m.jwksFetchErrors.Inc() }

// maxExemplarID is the longest request id attached as an exemplar: the
// OpenMetrics limit is 128 characters for an exemplar's label names and
// values together, and client_golang panics beyond it.
const maxExemplarID = prometheus.ExemplarMaxRunes - len("request_id")

// observe counts one request of s and records d with the exemplar
// label=id, when there is an id that fits one and the gate lets it
// through: a trace id always, a request id at most once per bucket and
// exemplarEvery. A request or trace id is ASCII, so its length in bytes
// is its length in runes.
func (s *codeSeries) observe(d time.Duration, label, id string) {
	s.count.Inc()
	v := d.Seconds()
	eo, ok := s.duration.(prometheus.ExemplarObserver)
	if !ok || id == "" || len(label)+len(id) > prometheus.ExemplarMaxRunes || !utf8.ValidString(id) ||
		!s.gate.pass(v, label == "trace_id") {
		s.duration.Observe(v)
		return
	}
	eo.ObserveWithExemplar(v, prometheus.Labels{label: id})
}

// exemplarEvery is how often a bucket takes a request id as exemplar.
const exemplarEvery = time.Second

// exemplarGate spares the exemplars nobody would see. A classic histogram
// keeps only the last exemplar of each bucket, and Prometheus reads it
// once per scrape (15 s or more): attaching one to every request, at
// about a dozen allocations each, mostly made exemplars that the next
// request replaced. The gate lets a request id through at most once per
// bucket and exemplarEvery, and a trace id always; a trace id also holds
// the bucket for exemplarEvery, so that request ids do not replace the
// link to a trace at once.
type exemplarGate struct {
	now    func() time.Time
	bounds []float64      // the buckets' upper bounds; one more bucket is +Inf
	last   []atomic.Int64 // when each bucket last took an exemplar, Unix ns
}

// pass reports whether an observation of v may carry an exemplar.
func (g *exemplarGate) pass(v float64, always bool) bool {
	i, _ := slices.BinarySearch(g.bounds, v) // the bucket: the first bound >= v
	now := g.now().UnixNano()
	last := g.last[i].Load()
	if always {
		g.last[i].Store(now)
		return true
	}
	return now-last >= int64(exemplarEvery) && g.last[i].CompareAndSwap(last, now)
}

// The metric families that exist only in shared mode (GATEWAY_REDIS_URL
// set), registered by NewShared.
const (
	RedisDegraded            = namespace + "_redis_degraded"
	RedisInvalidEntriesTotal = namespace + "_redis_invalid_entries_total"
)

// SharedNames returns the name of every metric family NewShared
// registers.
func SharedNames() []string { return []string{RedisDegraded, RedisInvalidEntriesTotal} }

// Shared holds shared mode's own metrics. Its methods are safe for
// concurrent use.
type Shared struct {
	degraded       prometheus.Gauge
	invalidEntries prometheus.Counter
}

// NewShared creates shared mode's metrics and registers them with reg.
func NewShared(reg prometheus.Registerer) (*Shared, error) {
	s := &Shared{
		degraded: gauge("redis_degraded",
			"1 while this replica serves from its own state because Redis is unreachable, 0 otherwise."),
		invalidEntries: counter("redis_invalid_entries_total",
			"Entries read back from Redis that were not a valid answer; each was taken as a miss."),
	}
	for _, c := range []prometheus.Collector{s.degraded, s.invalidEntries} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Degraded sets whether the replica serves from its own state.
func (s *Shared) Degraded(on bool) {
	v := 0.0
	if on {
		v = 1
	}
	s.degraded.Set(v)
}

// InvalidEntry counts an invalid entry read back from Redis.
func (s *Shared) InvalidEntry() { s.invalidEntries.Inc() }
