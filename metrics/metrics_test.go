package metrics

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata from the metrics produced")

// The statuses the gateway answers and the upstream outcomes it records;
// exercise sets every one of them.
var (
	answeredCodes    = []int{200, 400, 401, 404, 405, 429, 499, 500, 502, 503, 504}
	upstreamOutcomes = []string{"200", "400", "401", "403", "404", "429", "500", "502", "503", "504", "timeout", "error"}
)

// exercise creates the gateway's metrics on a new registry and records
// every label value with fixed durations, so that the output is
// deterministic.
func exercise(t *testing.T) (*prometheus.Registry, *Metrics) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := New(reg, "1.2.3", func() float64 { return 42 })
	if err != nil {
		t.Fatal(err)
	}
	for i, code := range answeredCodes {
		m.Request(code, time.Duration(i+1)*40*time.Microsecond)
		m.RequestWithExemplar(code, time.Duration(i+1)*30*time.Millisecond, "rid-1")
	}
	m.Request(200, 20*time.Microsecond) // a cache hit
	for i, o := range upstreamOutcomes {
		m.Upstream(o, time.Duration(i+1)*70*time.Millisecond, "rid-2")
	}
	for _, r := range []string{CacheHit, CacheHit, CacheMiss, CacheStale, CacheNegativeHit} {
		m.CacheLookup(r)
	}
	m.RateLimited("anonymous")
	m.RateLimited("anonymous")
	m.RateLimited("billing-service")
	m.InFlight().Inc()
	m.InFlight().Inc()
	m.InFlight().Inc()
	m.InFlight().Dec()
	m.BreakerState(2)
	m.SecretReloadError("api_key")
	m.SecretReloadError("account_id")
	m.SecretReloadError("callers")
	m.RedisError()
	m.Retry()
	m.Retry()
	m.JWKSFetchError()
	return reg, m
}

// contractNames are the contract's metric families, in its table's order.
var contractNames = []string{
	RequestsTotal, RequestDuration, UpstreamRequestsTotal, UpstreamRequestDuration,
	CacheLookupsTotal, CacheEntries, RateLimitedTotal,
}

func TestContractNames(t *testing.T) {
	want := []string{
		"bluetape_gateway_requests_total",
		"bluetape_gateway_request_duration_seconds",
		"bluetape_gateway_upstream_requests_total",
		"bluetape_gateway_upstream_request_duration_seconds",
		"bluetape_gateway_cache_lookups_total",
		"bluetape_gateway_cache_entries",
		"bluetape_gateway_rate_limited_total",
	}
	if !slices.Equal(contractNames, want) {
		t.Errorf("got %q; want %q", contractNames, want)
	}
}

// TestGolden pins names, types, help, labels and bucket boundaries: the
// contract's families in testdata/contract.txt, the others in
// testdata/extras.txt. Run with -update to rewrite them after an intended
// change, and review the diff.
func TestGolden(t *testing.T) {
	reg, _ := exercise(t)
	for file, names := range map[string][]string{
		"contract.txt": contractNames,
		"extras.txt":   {InFlightRequests, CircuitBreakerState, SecretReloadErrorsTotal, RedisErrorsTotal, UpstreamRetriesTotal, UpstreamInFlight, JWKSFetchErrorsTotal},
	} {
		t.Run(file, func(t *testing.T) {
			path := filepath.Join("testdata", file)
			if *update {
				out, err := testutil.GatherAndFormat(reg, expfmt.TypeTextPlain, names...)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, out, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := testutil.GatherAndCompare(reg, f, names...); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestBuildInfo(t *testing.T) {
	reg, _ := exercise(t)
	want := `# HELP bluetape_gateway_build_info Always 1; the labels tell the running version.
# TYPE bluetape_gateway_build_info gauge
bluetape_gateway_build_info{goversion="` + runtime.Version() + `",version="1.2.3"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), BuildInfo); err != nil {
		t.Error(err)
	}
}

// TestNames checks that Names lists exactly the families New registers,
// once each, and that they live beside the Go and process collectors.
func TestNames(t *testing.T) {
	reg, _ := exercise(t)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range families {
		if name := f.GetName(); !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") {
			got = append(got, name)
		}
	}
	want := slices.Sorted(slices.Values(Names()))
	if len(slices.Compact(slices.Clone(want))) != len(want) {
		t.Errorf("Names() has duplicates: %q", want)
	}
	if !slices.Equal(got, want) {
		t.Errorf("registered families %q; Names() %q", got, want)
	}
	for _, name := range contractNames {
		if !slices.Contains(Names(), name) {
			t.Errorf("Names() lacks the contract's %s", name)
		}
	}
}

func TestLint(t *testing.T) {
	reg, _ := exercise(t)
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

// TestRequestCodeFold checks that a status outside 100–599 is counted as
// 500, so that the code label stays three digits.
func TestRequestCodeFold(t *testing.T) {
	reg, m := newTestMetrics(t)
	for _, code := range []int{-1, 0, 42, 99, 600, 999, 1000} {
		m.Request(code, time.Millisecond)
		m.RequestWithExemplar(code, time.Millisecond, "rid")
	}
	want := `# HELP bluetape_gateway_requests_total API requests answered, by the HTTP status returned.
# TYPE bluetape_gateway_requests_total counter
bluetape_gateway_requests_total{code="500"} 14
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), RequestsTotal); err != nil {
		t.Error(err)
	}
}

// TestUpstreamOutcomeFold checks that an outcome outside the label's set
// is counted as "error".
func TestUpstreamOutcomeFold(t *testing.T) {
	reg, m := newTestMetrics(t)
	for _, o := range []string{"", "Timeout", "20", "2000", "abc", "600", "099", "/customers/x", "error"} {
		m.Upstream(o, time.Millisecond, "")
	}
	m.Upstream("599", time.Millisecond, "")
	want := `# HELP bluetape_gateway_upstream_requests_total Requests sent to BlueTape, by outcome: the upstream status, timeout or error.
# TYPE bluetape_gateway_upstream_requests_total counter
bluetape_gateway_upstream_requests_total{outcome="599"} 1
bluetape_gateway_upstream_requests_total{outcome="error"} 9
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), UpstreamRequestsTotal); err != nil {
		t.Error(err)
	}
}

// TestExemplars checks that the request id becomes an exemplar of both
// duration histograms, and that an id too long for an exemplar is
// recorded without one instead of panicking: a request id of 128
// characters is valid, but OpenMetrics allows 128 for the exemplar's name
// and value together.
func TestExemplars(t *testing.T) {
	reg, m := newTestMetrics(t)
	long := strings.Repeat("x", 128)
	fits := strings.Repeat("y", maxExemplarID)
	m.RequestWithExemplar(200, 3*time.Millisecond, fits)
	m.RequestWithExemplar(404, 3*time.Millisecond, long)
	m.RequestWithExemplar(502, 3*time.Millisecond, "bad-\xff")
	m.Upstream("200", 3*time.Millisecond, fits)
	m.Upstream("404", 3*time.Millisecond, long)

	out, err := testutil.GatherAndFormat(reg, expfmt.TypeOpenMetrics, RequestDuration, UpstreamRequestDuration)
	if err != nil {
		t.Fatal(err)
	}
	text := string(out)
	for _, want := range []string{
		`bluetape_gateway_request_duration_seconds_bucket{code="200",le="0.005"} 1 # {request_id="` + fits + `"} 0.003`,
		`bluetape_gateway_upstream_request_duration_seconds_bucket{outcome="200",le="0.005"} 1 # {request_id="` + fits + `"} 0.003`,
		`bluetape_gateway_request_duration_seconds_count{code="404"} 1`,
		`bluetape_gateway_upstream_request_duration_seconds_count{outcome="404"} 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("exposition lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, long) || strings.Contains(text, "bad-") {
		t.Errorf("an id unfit for an exemplar was attached:\n%s", text)
	}
}

// TestNoExemplarsInText checks that the text format, which promtool and
// older scrapers read, carries no exemplars.
func TestNoExemplarsInText(t *testing.T) {
	reg, _ := exercise(t)
	out, err := testutil.GatherAndFormat(reg, expfmt.TypeTextPlain)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out, []byte("request_id")) {
		t.Errorf("text exposition carries exemplars:\n%s", out)
	}
}

// BenchmarkCacheHit measures the metrics a cache hit records.
func BenchmarkCacheHit(b *testing.B) {
	m, err := New(prometheus.NewRegistry(), "bench", nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.InFlight().Inc()
			m.Request(200, 40*time.Microsecond)
			m.CacheLookup(CacheHit)
			m.InFlight().Dec()
		}
	})
}

// newTestMetrics returns Metrics registered in a new registry.
func newTestMetrics(t *testing.T) (*prometheus.Registry, *Metrics) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := New(reg, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	return reg, m
}

// TestExemplarGate checks that a bucket takes a request id as exemplar at
// most once per exemplarEvery, each bucket on its own, and that a trace
// id always goes through and holds its bucket against request ids.
func TestExemplarGate(t *testing.T) {
	reg, m := newTestMetrics(t)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m.now = func() time.Time { return now }
	check := func(step string, want ...string) {
		t.Helper()
		out, err := testutil.GatherAndFormat(reg, expfmt.TypeOpenMetrics, RequestDuration)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range want {
			if !strings.Contains(string(out), w) {
				t.Errorf("%s: exposition lacks %q:\n%s", step, w, out)
			}
		}
	}
	m.RequestWithExemplar(200, 3*time.Millisecond, "first")
	m.RequestWithExemplar(200, 3*time.Millisecond, "second")         // same bucket, same second
	m.RequestWithExemplar(200, 300*time.Millisecond, "other-bucket") // a bucket of its own
	check("within a second",
		`le="0.005"} 2 # {request_id="first"} 0.003`,
		`le="0.5"} 3 # {request_id="other-bucket"} 0.3`)

	now = now.Add(exemplarEvery)
	m.RequestWithExemplar(200, 3*time.Millisecond, "third")
	check("a second later", `le="0.005"} 3 # {request_id="third"} 0.003`)

	m.RequestWithTrace(200, 3*time.Millisecond, "0af7651916cd43dd8448eb211c80319c")
	now = now.Add(exemplarEvery / 2)
	m.RequestWithExemplar(200, 3*time.Millisecond, "fourth")
	check("after a trace id", `le="0.005"} 5 # {trace_id="0af7651916cd43dd8448eb211c80319c"} 0.003`)
}
