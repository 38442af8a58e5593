package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
)

// anonymousTraffic is what the Prometheus test sends to a sandbox gateway
// whose anonymous bucket holds anonymousBurst requests and barely refills:
// a miss, hits, an upstream 404 then its negative hit, an upstream 400, an
// invalid id, an upstream failure, an unmatched route, another method, and
// requests over the rate.
const anonymousBurst = 8

var anonymousTraffic = []sent{
	{method: "GET", path: "/customers/alice/signup", code: 200, header: []string{"X-Request-Id", "e2e-miss-alice"}},
	{method: "GET", path: "/customers/alice/signup", code: 200},
	{method: "GET", path: "/customers/alice/signup", code: 200},
	{method: "GET", path: "/customers/unknown-customer/signup", code: 404},
	{method: "GET", path: "/customers/unknown-customer/signup", code: 404},
	{method: "GET", path: "/customers/bad-request/signup", code: 400},
	{method: "GET", path: "/customers/bad%20id/signup", code: 400},
	{method: "GET", path: "/customers/upstream-error/signup", code: 502},
	{method: "GET", path: "/nowhere", code: 404},
	{method: "POST", path: "/customers/alice/signup", code: 405},
	{method: "GET", path: "/customers/alice/signup", code: 429},
	{method: "GET", path: "/customers/alice/signup", code: 429},
	{method: "GET", path: "/customers/bob/signup", code: 429},
	{method: "GET", path: "/customers/bob/signup", code: 429},
}

// TestPrometheusScrapesGateway runs the gateway and a Prometheus server
// scraping it every second, sends known traffic, and reads the counts back
// through Prometheus's query API.
func TestPrometheusScrapesGateway(t *testing.T) {
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus not found in PATH: install it (Debian: apt-get install prometheus) to run this test")
	}
	gw := gatewaytest.Built.Start(t, []string{
		"GATEWAY_RATE_LIMIT=0.001", "GATEWAY_RATE_BURST=" + strconv.Itoa(anonymousBurst),
		"GATEWAY_LOG_LEVEL=info",
	}, "-sandbox")
	prom := startPrometheus(t, promBin, strings.TrimPrefix(gw.Admin, "http://"))

	// A scrape before the traffic, so that rates have a starting point.
	prom.waitFor(t, `up{job="bluetape-gateway"}`, func(v float64) bool { return v == 1 })

	send(t, gw, anonymousTraffic)
	n := float64(len(anonymousTraffic))
	prom.waitFor(t, `sum(bluetape_gateway_requests_total)`, func(v float64) bool { return v == n })

	checks := []struct {
		query string
		want  map[string]float64 // by the value of the query's one label; "" without labels
	}{
		{`sum by (code) (bluetape_gateway_requests_total)`,
			map[string]float64{"200": 3, "404": 3, "400": 2, "502": 1, "405": 1, "429": 4}},
		{`sum(bluetape_gateway_request_duration_seconds_count)`, map[string]float64{"": n}},
		{`sum by (result) (bluetape_gateway_cache_lookups_total)`,
			map[string]float64{"hit": 2, "miss": 4, "negative_hit": 1, "stale": 0}},
		{`sum by (outcome) (bluetape_gateway_upstream_requests_total)`,
			map[string]float64{"200": 1, "404": 1, "400": 1, "500": 1}},
		{`sum by (caller) (bluetape_gateway_rate_limited_total)`, map[string]float64{"anonymous": 4}},
		{`sum(bluetape_gateway_cache_entries)`, map[string]float64{"": 2}},
		{`sum(bluetape_gateway_in_flight_requests)`, map[string]float64{"": 0}},
		{`count by (version) (bluetape_gateway_build_info)`, map[string]float64{"e2e": 1}},
	}
	for _, c := range checks {
		got := prom.vector(t, c.query)
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%s = %v; want %v", c.query, got, c.want)
		}
	}

	// More requests, so that the buckets' rates are not zero.
	more := []sent{{method: "GET", path: "/customers/carol/signup", code: 429}, {method: "GET", path: "/nowhere", code: 404}}
	send(t, gw, more)
	n += float64(len(more))
	p99 := `histogram_quantile(0.99, sum by (le) (rate(bluetape_gateway_request_duration_seconds_bucket[1m])))`
	prom.waitFor(t, p99, func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) && v > 0 })
	prom.waitFor(t, `sum(bluetape_gateway_requests_total)`, func(v float64) bool { return v == n })

	// The miss's request id reached Prometheus as an exemplar.
	gatewaytest.WaitFor(t, 10*time.Second, "the exemplar of e2e-miss-alice in Prometheus", func() bool {
		return strings.Contains(prom.get(t, "/api/v1/query_exemplars", url.Values{
			"query": {`bluetape_gateway_request_duration_seconds_bucket`},
			"start": {strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10)},
			"end":   {strconv.FormatInt(time.Now().Add(time.Minute).Unix(), 10)},
		}), `"request_id":"e2e-miss-alice"`)
	})

	// One access line per request, and nothing else at info but the
	// lines of starting and stopping.
	gw.Stop(t)
	var access int
	for _, line := range strings.Split(strings.TrimSpace(gw.Stdout.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("stdout line is not JSON: %q", line)
		}
		if m["msg"] == "request" {
			access++
		}
	}
	if access != int(n) {
		t.Errorf("%d access lines for %v requests:\n%s", access, n, gw.Stdout)
	}
}

// prometheus is a running Prometheus server.
type prometheus struct {
	*gatewaytest.Process
	addr string
}

// startPrometheus runs Prometheus scraping target every second, with its
// storage in a temporary directory, and waits until it is ready.
func startPrometheus(t *testing.T, bin, target string) *prometheus {
	t.Helper()
	dir := t.TempDir()
	config := filepath.Join(dir, "prometheus.yml")
	err := os.WriteFile(config, []byte(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: bluetape-gateway
    static_configs:
      - targets: ["`+target+`"]
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	var p *prometheus
	gatewaytest.StartListening(t, func() (*gatewaytest.Process, string) {
		p = &prometheus{addr: gatewaytest.FreeAddr(t)}
		p.Process = gatewaytest.Start(t, nil, bin,
			"--config.file="+config,
			"--storage.tsdb.path="+filepath.Join(dir, "data"),
			"--web.listen-address="+p.addr,
			"--enable-feature=exemplar-storage",
			"--log.level=warn",
		)
		return p.Process, "http://" + p.addr + "/-/ready"
	})
	return p
}

// get reads an API path of Prometheus.
func (p *prometheus) get(t *testing.T, path string, q url.Values) string {
	t.Helper()
	resp, b := gatewaytest.Do(t, http.DefaultClient, http.MethodGet, "http://"+p.addr+path+"?"+q.Encode())
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s?%s: %d %s", path, q.Encode(), resp.StatusCode, b)
	}
	return b
}

// vector runs an instant query and returns its samples by the value of
// their one label ("" for a sample without labels).
func (p *prometheus) vector(t *testing.T, query string) map[string]float64 {
	t.Helper()
	var r struct {
		Status string
		Data   struct {
			ResultType string
			Result     []struct {
				Metric map[string]string
				Value  [2]any
			}
		}
	}
	body := p.get(t, "/api/v1/query", url.Values{"query": {query}})
	if err := json.Unmarshal([]byte(body), &r); err != nil || r.Status != "success" || r.Data.ResultType != "vector" {
		t.Fatalf("query %s: %v %s", query, err, body)
	}
	out := map[string]float64{}
	for _, s := range r.Data.Result {
		key := ""
		for name, v := range s.Metric {
			if name != "__name__" {
				key = v
			}
		}
		f, err := strconv.ParseFloat(fmt.Sprint(s.Value[1]), 64)
		if err != nil {
			t.Fatalf("query %s: sample value %v", query, s.Value[1])
		}
		out[key] = f
	}
	return out
}

// waitFor polls query until its single sample satisfies ok.
func (p *prometheus) waitFor(t *testing.T, query string, ok func(float64) bool) {
	t.Helper()
	var last map[string]float64
	deadline := time.Now().Add(30 * time.Second)
	for {
		last = p.vector(t, query)
		if len(last) == 1 {
			for _, v := range last {
				if ok(v) {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is %v after 30s", query, last)
		}
		time.Sleep(200 * time.Millisecond) // the pause between polls, bounded by the deadline
	}
}
