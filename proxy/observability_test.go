package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/bluetape/bluetape-gateway/metrics"
	"github.com/bluetape/bluetape-gateway/proxy/cache"
	"github.com/bluetape/bluetape-gateway/proxy/callers"
	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
	"github.com/bluetape/bluetape-gateway/proxy/logging"
	"github.com/bluetape/bluetape-gateway/proxy/ratelimit"
)

// obsMarker is part of every caller-chosen value the observability tests
// send, so that finding it in a label or in /metrics is finding a leak.
const obsMarker = "zqx"

// obsToken is billing-service's bearer token in obsRegistry.
const obsToken = "obs-billing-token-7d41"

// obsRegistry returns a caller registry with billing-service, whose rate
// is tiny so that its third request in a test is refused.
func obsRegistry(t *testing.T) *callers.Registry {
	t.Helper()
	sum := sha256.Sum256([]byte(obsToken))
	r, err := callers.Parse([]byte("callers:\n  - name: billing-service\n    token_sha256: " +
		hex.EncodeToString(sum[:]) + "\n    rate: 0.001\n    burst: 2\n"))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// obsLogHandler gives a test gateway the production log handler at level,
// writing into the returned buffer; read it after Flush.
func obsLogHandler(t *testing.T, level slog.Level) (func(*testOptions), *gatewaytest.LogBuffer, *logging.Handler) {
	buf := &gatewaytest.LogBuffer{}
	h := logging.New(buf, level)
	t.Cleanup(func() { h.Close() })
	return func(o *testOptions) { o.Logger = slog.New(h) }, buf, h
}

// obsAccessLines returns the access lines among logs.
func obsAccessLines(t *testing.T, logs string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, m := range gatewaytest.JSONLines(t, logs) {
		if m["msg"] == "request" {
			out = append(out, m)
		}
	}
	return out
}

// obsScrape reads reg through the admin handler's /metrics, with accept
// as the Accept header when it is not empty.
func obsScrape(t *testing.T, reg prometheus.Gatherer, accept string) (contentType, body string) {
	t.Helper()
	h := Admin(AdminOptions{Gatherer: reg, Ready: func() bool { return true },
		Cache: LocalCache(cache.New(cache.Options{MaxEntries: 1})), Logger: slog.New(slog.DiscardHandler)})
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", rec.Code, rec.Body)
	}
	return rec.Header().Get("Content-Type"), rec.Body.String()
}

const openMetrics = "application/openmetrics-text; version=1.0.0"

// obsRoute makes the fake upstream answer by the id's prefix: s<code>-
// answers that status with body, slow- waits until the gateway gives up,
// anything else a signup URL.
func obsRoute(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := lastSegment(r.URL.Path)
		var code int
		switch {
		case strings.HasPrefix(id, "slow-"):
			<-r.Context().Done()
			return
		case len(id) > 5 && id[0] == 's' && id[4] == '-':
			fmt.Sscanf(id[1:4], "%d", &code)
		}
		w.Header().Set("Content-Type", "application/json")
		if code == 0 {
			io.WriteString(w, `{"signUpUrl": "https://www.bluetape.com/signup?id=`+id+`"}`)
			return
		}
		if code == http.StatusFound {
			w.Header().Set("Location", "https://elsewhere.example/"+id)
		}
		w.WriteHeader(code)
		io.WriteString(w, body)
	}
}

func TestAccessLogFields(t *testing.T) {
	for _, path := range []string{"slog", "LogHandler"} {
		t.Run(path, func(t *testing.T) {
			var buf *gatewaytest.LogBuffer
			var h *logging.Handler
			edit := func(*testOptions) {}
			if path == "LogHandler" {
				edit, buf, h = obsLogHandler(t, slog.LevelDebug)
			}
			tg := newTestGateway(t, edit)
			if buf == nil {
				buf = tg.Logs
			} else if tg.access.out == nil {
				t.Fatal("the access log does not write through the LogHandler's buffer")
			}
			tg.Upstream.setHandler(obsRoute(notFoundBody))

			before := time.Now()
			tg.get(t, "/customers/alice/signup", "X-Request-Id", "obs-miss-1")
			tg.get(t, "/customers/alice/signup", "X-Request-Id", "obs-hit-1")
			tg.get(t, "/customers/s404-bob/signup", "X-Request-Id", "obs-404-1")
			resp, _ := tg.get(t, "/admin/"+obsMarker+"-raw-path")
			unmatchedID := resp.Header.Get("X-Request-Id")
			tg.do(t, http.MethodPost, "/customers/alice/signup", "X-Request-Id", "obs-405-1")
			if h != nil {
				if err := h.Flush(); err != nil {
					t.Fatal(err)
				}
			}

			lines := obsAccessLines(t, buf.String())
			want := []map[string]any{
				{"level": "INFO", "request_id": "obs-miss-1", "caller": "anonymous", "method": "GET",
					"route": "/customers/:id/signup", "status": 200.0, "cache": "miss", "upstream": "200"},
				{"level": "INFO", "request_id": "obs-hit-1", "caller": "anonymous", "method": "GET",
					"route": "/customers/:id/signup", "status": 200.0, "cache": "hit", "upstream": ""},
				{"level": "INFO", "request_id": "obs-404-1", "caller": "anonymous", "method": "GET",
					"route": "/customers/:id/signup", "status": 404.0, "cache": "miss", "upstream": "404"},
				{"level": "INFO", "request_id": unmatchedID, "caller": "-", "method": "GET",
					"route": "unmatched", "status": 404.0, "cache": "", "upstream": ""},
				{"level": "INFO", "request_id": "obs-405-1", "caller": "-", "method": "POST",
					"route": "/customers/:id/signup", "status": 405.0, "cache": "", "upstream": ""},
			}
			if len(lines) != len(want) {
				t.Fatalf("got %d access lines; want %d, one per request:\n%s", len(lines), len(want), buf)
			}
			keys := []string{"time", "level", "msg", "request_id", "trace_id", "span_id", "caller", "method", "route", "status",
				"duration_ms", "cache", "upstream"}
			slices.Sort(keys)
			traceID := regexp.MustCompile(`^[0-9a-f]{32}$`)
			spanID := regexp.MustCompile(`^[0-9a-f]{16}$`)
			spans := map[any]bool{}
			for i, line := range lines {
				// Every line has its request's trace: a new one each here,
				// as no caller sent a traceparent.
				tid, sid := fmt.Sprint(line["trace_id"]), fmt.Sprint(line["span_id"])
				if !traceID.MatchString(tid) || !spanID.MatchString(sid) || tid == strings.Repeat("0", 32) || sid == strings.Repeat("0", 16) {
					t.Errorf("line %d: trace_id %q span_id %q; want valid ids", i, tid, sid)
				}
				if spans[tid] || spans[sid] {
					t.Errorf("line %d: trace_id %q or span_id %q already seen", i, tid, sid)
				}
				spans[tid], spans[sid] = true, true
				for k, v := range want[i] {
					if line[k] != v {
						t.Errorf("line %d: %s is %v; want %v", i, k, line[k], v)
					}
				}
				if got := slices.Sorted(maps.Keys(line)); !slices.Equal(got, keys) {
					t.Errorf("line %d has fields %q; want %q", i, got, keys)
				}
				ts, err := time.Parse(time.RFC3339Nano, fmt.Sprint(line["time"]))
				if err != nil || ts.Before(before.Add(-time.Second)) || ts.After(time.Now().Add(time.Second)) {
					t.Errorf("line %d: time %v is not the time of the request (%v)", i, line["time"], err)
				}
				if d, ok := line["duration_ms"].(float64); !ok || d < 0 || d > 10000 {
					t.Errorf("line %d: duration_ms %v", i, line["duration_ms"])
				}
			}
			if strings.Contains(buf.String(), obsMarker) {
				t.Errorf("the raw path of an unmatched request was logged:\n%s", buf)
			}
		})
	}
}

// TestAccessLogMatchesSlog checks that the LogHandler's hand-built access
// line is byte for byte the line slog's JSON handler writes, escapes
// included, whatever the values hold.
func TestAccessLogMatchesSlog(t *testing.T) {
	cases := []struct {
		method, route string
		st            requestState
		status        int
		err           *apiError
		rid           string
	}{
		{method: "GET", route: signupRoute, st: requestState{caller: "billing-service", cache: "hit"}, status: 200, rid: "abc"},
		{method: "GET", route: signupRoute, st: requestState{caller: "anonymous", cache: "miss", upstream: "200", shared: true}, status: 200, rid: "4bf92f3577b34da6a3ce929d0e0e4736"},
		{method: "M-SEARCH", route: "", st: requestState{caller: "-"}, status: 404, rid: "a:b/c+d=e.f_g-h"},
		{method: "GET", route: signupRoute, st: requestState{caller: "anonymous", cache: "miss", upstream: "timeout"}, status: 504,
			err: errorStatus(errors.New("upstream timeout: context deadline exceeded")), rid: "r"},
		{method: "GET", route: signupRoute, st: requestState{caller: "svc", cache: "miss", upstream: "error"}, status: 502,
			err: errorStatus(errors.New("quote \" backslash \\ newline \n return \r tab \t nul \x00 esc \x1b del \x7f <html>&amp; é ünï 😀 bad \xff\xfe sep \u2028 \u2029 end")), rid: ""},
		{method: "GET", route: signupRoute, st: requestState{caller: "anonymous", cache: "miss"}, status: 503,
			err: errorStatus(errors.New("at capacity")), rid: "x"},
		{method: "GET", route: signupRoute, st: requestState{caller: "anonymous"}, status: 500,
			err: errorStatus(errors.New(strings.Repeat("long error ", 100))), rid: "y"},
		{method: "GET", route: signupRoute, st: requestState{caller: "anonymous"}, status: 400, err: errInvalidID, rid: "z"},
	}
	timeField := regexp.MustCompile(`^\{"time":"[^"]*",`)
	for i, tc := range cases {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			c := echo.New().NewContext(httptest.NewRequest(tc.method, "/x", nil), httptest.NewRecorder())
			c.SetPath(tc.route)
			tc.st.start = time.Now()
			d := 1234567 * time.Nanosecond

			// Ids with every hex digit; the first case's are zero.
			var tid trace.TraceID
			var sid trace.SpanID
			if i > 0 {
				tid = trace.TraceID{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, byte(i), 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32}
				sid = trace.SpanID{0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, byte(i)}
			}

			var fast, slow bytes.Buffer
			h := logging.New(&fast, slog.LevelDebug)
			newAccessLog(slog.New(h)).write(c, &tc.st, tc.status, d, tc.rid, tid, sid, tc.err)
			h.Close()
			newAccessLog(slog.New(slog.NewJSONHandler(&slow, &slog.HandlerOptions{Level: slog.LevelDebug}))).
				write(c, &tc.st, tc.status, d, tc.rid, tid, sid, tc.err)

			if !json.Valid(fast.Bytes()) {
				t.Errorf("not valid JSON: %s", fast.Bytes())
			}
			got := timeField.ReplaceAll(fast.Bytes(), []byte("{"))
			want := timeField.ReplaceAll(slow.Bytes(), []byte("{"))
			if !bytes.Equal(got, want) {
				t.Errorf("LogHandler line\n%s\ndiffers from slog's\n%s", fast.Bytes(), slow.Bytes())
			}
		})
	}
}

// FuzzAppendLogString checks that any string is escaped as slog's JSON
// handler escapes it, into valid JSON.
func FuzzAppendLogString(f *testing.F) {
	for _, s := range []string{"", "plain", "q\"b\\", "\x00\x1f\x7f", "<>&", "\u2028\u2029", "\xff\xfe", "é😀", "\xed\xa0\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := appendLogString(nil, s)
		var want bytes.Buffer
		slog.New(slog.NewJSONHandler(&want, &slog.HandlerOptions{
			ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
				if a.Key != "v" {
					return slog.Attr{}
				}
				return a
			},
		})).Info("", "v", s)
		if w := `{"v":` + string(got) + "}\n"; w != want.String() {
			t.Errorf("appendLogString(%q) = %s; slog writes %s", s, got, want.String())
		}
		if !json.Valid(got) {
			t.Errorf("appendLogString(%q) = %s, not valid JSON", s, got)
		}
	})
}

// TestAccessLogLevel checks GATEWAY_LOG_LEVEL's effect on access lines:
// at warn, only requests the gateway failed (5xx but 503) are logged; at
// error, none.
func TestAccessLogLevel(t *testing.T) {
	for _, level := range []slog.Level{slog.LevelWarn, slog.LevelError} {
		t.Run(level.String(), func(t *testing.T) {
			edit, buf, h := obsLogHandler(t, level)
			tg := newTestGateway(t, edit)
			tg.Upstream.setHandler(obsRoute(`{"code": "500", "reason": "Unexpected error."}`))
			tg.get(t, "/customers/alice/signup")
			tg.get(t, "/customers/alice/signup")
			tg.get(t, "/customers/s404-bob/signup")
			tg.get(t, "/customers/bad%20id/signup")
			tg.get(t, "/nowhere")
			resp, _ := tg.get(t, "/customers/s500-carol/signup")
			if resp.StatusCode != http.StatusBadGateway {
				t.Fatalf("status %d; want 502", resp.StatusCode)
			}
			if err := h.Flush(); err != nil {
				t.Fatal(err)
			}
			for _, line := range gatewaytest.JSONLines(t, buf.String()) {
				if line["level"] == "INFO" || line["level"] == "DEBUG" {
					t.Errorf("at level %s, a line of level %s: %v", level, line["level"], line)
				}
			}
			lines := obsAccessLines(t, buf.String())
			wantLines := 0
			if level == slog.LevelWarn {
				wantLines = 1
			}
			if len(lines) != wantLines {
				t.Fatalf("got %d access lines; want %d:\n%s", len(lines), wantLines, buf)
			}
			if wantLines == 1 && (lines[0]["status"] != 502.0 || lines[0]["level"] != "WARN" || lines[0]["error"] == nil) {
				t.Errorf("got %v; want the 502 at WARN with its error", lines[0])
			}
		})
	}
}

// obsWeirdRequests sends requests whose every caller-chosen part is odd:
// ids, unmatched paths, methods, X-Forwarded-For, request ids and tokens.
// Each odd value holds obsMarker.
func obsWeirdRequests(t *testing.T, tg *testGateway, token string) {
	t.Helper()
	auth := func(h ...string) []string { return append(h, "Authorization", "Bearer "+token) }
	ids := []string{
		obsMarker + "-plain", obsMarker + "..", obsMarker + "%2F..%2Fadmin", "%2e%2e" + obsMarker, obsMarker + "%20space",
		obsMarker + "%00nul", "%C3%B1" + obsMarker, obsMarker + strings.Repeat("9", 200), obsMarker + "%3Cscript%3E",
		obsMarker + "'%3B--", obsMarker + "~_.-",
	}
	for _, id := range ids {
		tg.get(t, "/customers/"+id+"/signup", auth()...)
	}
	for _, p := range []string{
		"/" + obsMarker, "/customers/" + obsMarker, "/customers/" + obsMarker + "/signup/extra", "/CUSTOMERS/" + obsMarker + "/signup",
		"/%ff" + obsMarker, "/../" + obsMarker, "//" + obsMarker, "/metrics?" + obsMarker, "/customers//signup",
	} {
		tg.get(t, p, auth()...)
	}
	for _, m := range []string{"POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "ZQX-" + strings.ToUpper(obsMarker), "M-SEARCH"} {
		tg.do(t, m, "/customers/"+obsMarker+"/signup", auth()...)
		tg.do(t, m, "/"+obsMarker, auth()...)
	}
	for _, xff := range []string{"203.0.113.7", obsMarker + ", 198.51.100.1", "::1, " + obsMarker, strings.Repeat(obsMarker+",", 50)} {
		tg.get(t, "/customers/"+obsMarker+"-xff/signup", auth("X-Forwarded-For", xff, "X-Real-Ip", obsMarker)...)
	}
	// Request ids: odd ones are replaced; sane ones of 118 characters and
	// more are kept, the longest too long for an exemplar. Each is a miss.
	for i, rid := range []string{obsMarker + " space", obsMarker + "<>", strings.Repeat(obsMarker, 60), obsMarker + "\u00e9",
		strings.Repeat("q", 118), strings.Repeat("r", 119), strings.Repeat("s", 128)} {
		tg.get(t, fmt.Sprintf("/customers/%s-rid-%d/signup", obsMarker, i), auth("X-Request-Id", rid)...)
	}
	for _, h := range [][]string{
		{"Authorization", "Bearer " + obsMarker + "-wrong"},
		{"Authorization", "Basic " + obsMarker},
		{"Authorization", "Bearer " + strings.Repeat(obsMarker, 400)},
		{"Authorization", obsMarker},
		{"X-BlueTape-Key", obsMarker, "X-Integration-AccountId", obsMarker},
	} {
		tg.get(t, "/customers/"+obsMarker+"-token/signup", h...)
	}
}

// obsCheckLabels checks that every label value of the gateway's own
// families comes from its fixed set.
func obsCheckLabels(t *testing.T, reg prometheus.Gatherer, callerNames ...string) {
	t.Helper()
	three := regexp.MustCompile(`^[1-5][0-9][0-9]$`)
	allowed := map[string]func(string) bool{
		"code":    three.MatchString,
		"outcome": func(v string) bool { return three.MatchString(v) || v == "timeout" || v == "error" },
		"result": func(v string) bool {
			return slices.Contains([]string{metrics.CacheHit, metrics.CacheMiss, metrics.CacheStale, metrics.CacheNegativeHit}, v)
		},
		"caller": func(v string) bool { return v == callers.Anonymous || slices.Contains(callerNames, v) },
		"secret": func(v string) bool {
			return slices.Contains([]string{"api_key", "account_id", "callers", "admin_token", "redis_url"}, v)
		},
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), "bluetape_gateway_") {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				name, value := l.GetName(), l.GetValue()
				if f.GetName() == metrics.BuildInfo && (name == "version" || name == "goversion") {
					continue
				}
				ok, known := allowed[name]
				switch {
				case !known:
					t.Errorf("%s has label %s, outside the contract", f.GetName(), name)
				case !ok(value):
					t.Errorf("%s{%s=%q}: a value outside the label's fixed set", f.GetName(), name, value)
				}
			}
		}
	}
}

// TestMetricLabelsStayFixed sends odd requests to an open gateway and to
// one with callers, and checks that no label took a caller-chosen value
// and that none of them reached /metrics.
func TestMetricLabelsStayFixed(t *testing.T) {
	open := newTestGateway(t, func(o *testOptions) {
		o.Client.Timeout = 200 * time.Millisecond
		o.RateLimit = ratelimit.Policy{Rate: 0.001, Burst: 200}
	})
	open.Upstream.setHandler(obsRoute(`{"code": "x", "reason": "` + obsMarker + `"}`))
	// Every upstream outcome, each failure after a success so that the
	// breaker stays closed.
	for _, id := range []string{"s404-a", "s400-b", "s401-c", "s403-d", "s429-e", "s500-f", "s502-g", "s503-h", "s302-i", "slow-j"} {
		open.get(t, "/customers/ok-"+id+"/signup")
		open.get(t, "/customers/"+id+"/signup")
	}
	open.get(t, "/customers/s404-a/signup") // a negative hit
	obsWeirdRequests(t, open, "")
	for range 300 { // exhaust the anonymous bucket
		open.get(t, "/customers/ok-limit/signup")
	}

	withCallers := newTestGateway(t, func(o *testOptions) {
		r := obsRegistry(t)
		o.Callers = func() *callers.Registry { return r }
		o.RateLimit = ratelimit.Policy{Rate: 0.001, Burst: 200}
	})
	obsWeirdRequests(t, withCallers, obsToken)
	obsWeirdRequests(t, withCallers, obsMarker+"-not-a-token")

	for name, tg := range map[string]*testGateway{"open": open, "callers": withCallers} {
		t.Run(name, func(t *testing.T) {
			obsCheckLabels(t, tg.Registry, "billing-service")
			for _, accept := range []string{"", openMetrics} {
				_, body := obsScrape(t, tg.Registry, accept)
				if strings.Contains(strings.ToLower(body), obsMarker) {
					t.Errorf("a caller-chosen value reached /metrics (Accept %q):\n%s", accept, body)
				}
			}
		})
	}

	// The requests above reached every label value but stale.
	for _, want := range []struct {
		name  string
		label string
		value string
	}{
		{metrics.RateLimitedTotal, "caller", callers.Anonymous},
		{metrics.RateLimitedTotal, "caller", "billing-service"},
		{metrics.CacheLookupsTotal, "result", metrics.CacheHit},
		{metrics.CacheLookupsTotal, "result", metrics.CacheMiss},
		{metrics.CacheLookupsTotal, "result", metrics.CacheNegativeHit},
		{metrics.UpstreamRequestsTotal, "outcome", "timeout"},
		{metrics.UpstreamRequestsTotal, "outcome", "401"},
		{metrics.UpstreamRequestsTotal, "outcome", "302"},
		{metrics.RequestsTotal, "code", "504"},
		{metrics.RequestsTotal, "code", "405"},
		{metrics.RequestsTotal, "code", "429"},
		{metrics.RequestsTotal, "code", "401"},
	} {
		found := false
		for _, tg := range []*testGateway{open, withCallers} {
			found = found || metricValue(t, tg.Registry, want.name, want.label, want.value) > 0
		}
		if !found {
			t.Errorf("no %s{%s=%q}: the test did not reach it", want.name, want.label, want.value)
		}
	}
}

// TestMetricsCountEveryRequest checks that each request is counted once,
// under the status it was answered with, unmatched routes and other
// methods included.
func TestMetricsCountEveryRequest(t *testing.T) {
	tg := newTestGateway(t, nil)
	tg.Upstream.setHandler(obsRoute(notFoundBody))
	want := map[string]int{}
	for _, r := range []struct {
		method, path string
		code         int
	}{
		{"GET", "/customers/a/signup", 200},
		{"GET", "/customers/a/signup", 200},
		{"GET", "/customers/s404-b/signup", 404},
		{"GET", "/customers/s404-b/signup", 404},
		{"GET", "/customers/bad%20id/signup", 400},
		{"GET", "/nowhere", 404},
		{"POST", "/customers/a/signup", 405},
		{"HEAD", "/customers/a/signup", 405},
		{"DELETE", "/nowhere", 404},
	} {
		resp, _ := tg.do(t, r.method, r.path)
		if resp.StatusCode != r.code {
			t.Fatalf("%s %s: %d; want %d", r.method, r.path, resp.StatusCode, r.code)
		}
		want[fmt.Sprint(r.code)]++
	}
	for code, n := range want {
		if got := metricValue(t, tg.Registry, metrics.RequestsTotal, "code", code); got != float64(n) {
			t.Errorf("requests_total{code=%q} = %v; want %d", code, got, n)
		}
		if got := metricValue(t, tg.Registry, metrics.RequestDuration, "code", code); got != float64(n) {
			t.Errorf("request_duration_seconds_count{code=%q} = %v; want %d", code, got, n)
		}
	}
	if n := len(obsAccessLines(t, tg.Logs.String())); n != 9 {
		t.Errorf("%d access lines; want 9, one per request", n)
	}
	for result, n := range map[string]float64{"hit": 1, "miss": 2, "negative_hit": 1} {
		if got := metricValue(t, tg.Registry, metrics.CacheLookupsTotal, "result", result); got != n {
			t.Errorf("cache_lookups_total{result=%q} = %v; want %v", result, got, n)
		}
	}
}

// TestExemplarsOnScrape checks that a scrape asking for OpenMetrics gets
// the request id of a miss as the exemplar of its duration buckets, both
// the request's and the upstream call's, and that a plain scrape gets the
// text format.
func TestExemplarsOnScrape(t *testing.T) {
	tg := newTestGateway(t, nil)
	tg.get(t, "/customers/alice/signup", "X-Request-Id", "obs-exemplar-miss")
	tg.get(t, "/customers/alice/signup", "X-Request-Id", "obs-exemplar-hit")

	ct, body := obsScrape(t, tg.Registry, openMetrics)
	if !strings.HasPrefix(ct, "application/openmetrics-text") {
		t.Fatalf("Content-Type %q; want OpenMetrics", ct)
	}
	for _, re := range []string{
		`(?m)^bluetape_gateway_request_duration_seconds_bucket\{code="200",le="[^"]+"\} [0-9]+ # \{request_id="obs-exemplar-miss"\} [0-9.e+-]+ [0-9.e+-]+$`,
		`(?m)^bluetape_gateway_upstream_request_duration_seconds_bucket\{outcome="200",le="[^"]+"\} [0-9]+ # \{request_id="obs-exemplar-miss"\} [0-9.e+-]+ [0-9.e+-]+$`,
	} {
		if !regexp.MustCompile(re).MatchString(body) {
			t.Errorf("no exemplar matching %s in:\n%s", re, body)
		}
	}
	if strings.Contains(body, "obs-exemplar-hit") {
		t.Error("a cache hit carries an exemplar; the hit path should not pay for one")
	}

	ct, body = obsScrape(t, tg.Registry, "")
	if !strings.HasPrefix(ct, "text/plain") || strings.Contains(body, "request_id") {
		t.Errorf("a plain scrape got %q with exemplars: %v", ct, strings.Contains(body, "request_id"))
	}
}

// obsPanickingCache panics on looking up ids that start with "panic-".
type obsPanickingCache struct{ AnswerCache }

func (c obsPanickingCache) Get(ctx context.Context, id string) (*cache.Entry, cache.State) {
	if strings.HasPrefix(id, "panic-") {
		panic("cache exploded looking up " + id)
	}
	return c.AnswerCache.Get(ctx, id)
}

// TestSecretsNeverLogged drives every error path at debug level, and
// checks that neither credential appears in a log line or in /metrics,
// even when the upstream echoes them in its answers.
func TestSecretsNeverLogged(t *testing.T) {
	edit, logs, h := obsLogHandler(t, slog.LevelDebug)
	echoed := `{"code": "x", "reason": "bad key ` + testKey + ` for account ` + testAccount + `"}`
	tg := newTestGateway(t, func(o *testOptions) {
		edit(o)
		o.Client.Timeout = 200 * time.Millisecond
		o.Cache = obsPanickingCache{o.Cache}
	})
	tg.Upstream.setHandler(obsRoute(echoed))
	for _, id := range []string{
		"s401-rejected", "s403-forbidden", "s500-failing", "s502-gateway", "s503-busy", "s429-limited",
		"s302-redirect", "slow-timeout", "s200-echo", "s404-missing", "s400-invalid", "panic-now", "fine",
	} {
		tg.get(t, "/customers/"+id+"/signup")
		tg.get(t, "/customers/ok/signup")
	}
	if !strings.Contains(logs.String(), "panic serving request") {
		h.Flush()
		if !strings.Contains(logs.String(), "panic serving request") {
			t.Error("the panic was not logged; the test did not reach that path")
		}
	}

	// An upstream that refuses connections.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()
	edit2, logs2, h2 := obsLogHandler(t, slog.LevelDebug)
	down := newTestGateway(t, func(o *testOptions) {
		edit2(o)
		o.Client.BaseURL.Host = refused
	})
	down.get(t, "/customers/refused/signup")

	h.Flush()
	h2.Flush()
	for name, text := range map[string]string{"logs": logs.String(), "logs (refused)": logs2.String()} {
		if !strings.Contains(text, `"level":"WARN"`) {
			t.Errorf("%s: no warning logged; the test did not reach the error paths:\n%s", name, text)
		}
		obsNoSecret(t, name, text)
	}
	for name, tg := range map[string]*testGateway{"metrics": tg, "metrics (refused)": down} {
		for _, accept := range []string{"", openMetrics} {
			_, body := obsScrape(t, tg.Registry, accept)
			obsNoSecret(t, name, body)
		}
	}
}

// obsNoSecret fails if text holds either test credential, or a long
// enough piece of one to identify it.
func obsNoSecret(t *testing.T, where, text string) {
	t.Helper()
	gatewaytest.NoSecret(t, where, text, testKey, testAccount)
}

// BenchmarkAccessLog measures one cache hit's access line: through a
// LogHandler (the gateway's own, buffered and built without allocating)
// and through slog's JSON handler, each to io.Discard and to a file.
func BenchmarkAccessLog(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "log"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	for _, out := range []struct {
		name string
		w    io.Writer
	}{{"discard", io.Discard}, {"file", f}} {
		for _, h := range []struct {
			name string
			new  func(io.Writer) slog.Handler
		}{
			{"LogHandler", func(w io.Writer) slog.Handler { return logging.New(w, slog.LevelInfo) }},
			{"slog", func(w io.Writer) slog.Handler { return slog.NewJSONHandler(w, nil) }},
		} {
			b.Run(h.name+"/"+out.name, func(b *testing.B) {
				handler := h.new(out.w)
				if lh, ok := handler.(*logging.Handler); ok {
					b.Cleanup(func() { lh.Close() })
				}
				a := newAccessLog(slog.New(handler))
				c := echo.New().NewContext(httptest.NewRequest(http.MethodGet, "/customers/abc/signup", nil), httptest.NewRecorder())
				c.SetPath(signupRoute)
				st := &requestState{start: time.Now(), caller: "billing-service", cache: "hit"}
				tid := trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
				sid := trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}
				b.ReportAllocs()
				for b.Loop() {
					a.write(c, st, http.StatusOK, 42*time.Microsecond, "4bf92f3577b34da6a3ce929d0e0e4736", tid, sid, nil)
				}
			})
		}
	}
}

// TestLogClockMatchesRFC3339Nano checks the access log's time against
// time.RFC3339Nano across seconds, fractions with and without trailing
// zeros, and zones.
func TestLogClockMatchesRFC3339Nano(t *testing.T) {
	var lc logClock
	base := time.Date(2026, 3, 29, 0, 59, 59, 0, time.UTC)
	zones := []*time.Location{time.UTC, time.FixedZone("", -7*3600), time.FixedZone("", 5*3600+30*60)}
	if paris, err := time.LoadLocation("Europe/Paris"); err == nil {
		zones = append(zones, paris) // 2026-03-29 01:00 UTC: summer time starts
	}
	for _, loc := range zones {
		for _, ns := range []int{0, 1, 10, 999_999_999, 120_000_000, 123_456_789, 500_000_000, 1_000_000_000, 1_999_999_999, 3_600_000_000_001} {
			tm := base.Add(time.Duration(ns)).In(loc)
			if got, want := string(lc.appendTime(nil, tm)), tm.Format(time.RFC3339Nano); got != want {
				t.Errorf("appendTime(%v) = %s; want %s", tm, got, want)
			}
		}
	}
}
