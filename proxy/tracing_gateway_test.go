package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/bluetape/bluetape-gateway/proxy/callers"
	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
	"github.com/bluetape/bluetape-gateway/proxy/tracing"
	"github.com/bluetape/bluetape-gateway/proxy/tracing/otlptest"
)

const (
	callerTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerSpanID  = "00f067aa0ba902b7"
	callerState   = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
	bearerToken   = "trace-test-bearer-9d8c7b6a5f4e3d2c1b0a"
)

// newTracer sets a tracer up from env, with an in-memory exporter that
// gets every span the SDK records.
func newTracer(t *testing.T, env map[string]string) (*tracing.Tracer, *tracetest.InMemoryExporter) {
	t.Helper()
	otlptest.SetEnv(t, env)
	exp := tracetest.NewInMemoryExporter()
	tr, shutdown, err := tracing.Setup(t.Context(), tracing.Options{Version: "test",
		SpanProcessors: []sdktrace.SpanProcessor{sdktrace.NewSimpleSpanProcessor(exp)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = shutdown(context.Background()) })
	return tr, exp
}

// tracedGateway is a test gateway with tr, and a callers file whose one
// caller, "billing", has bearerToken.
func tracedGateway(t *testing.T, tr *tracing.Tracer) *testGateway {
	t.Helper()
	sum := sha256.Sum256([]byte(bearerToken))
	reg, err := callers.Parse([]byte("callers:\n  - name: billing\n    token_sha256: " + hex.EncodeToString(sum[:]) + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	return newTestGateway(t, func(o *testOptions) {
		o.Tracer = tr
		o.Callers = func() *callers.Registry { return reg }
	})
}

// accessIDs returns the trace_id and span_id of the access line with
// request id rid.
func accessIDs(t *testing.T, tg *testGateway, rid string) (traceID, spanID string) {
	t.Helper()
	for _, l := range tg.Logs.Records("request") {
		if l["request_id"] == rid {
			return fmt.Sprint(l["trace_id"]), fmt.Sprint(l["span_id"])
		}
	}
	t.Fatalf("no access line with request id %s in:\n%s", rid, tg.Logs.String())
	return "", ""
}

// splitTraceparent splits a version-00 traceparent.
func splitTraceparent(t *testing.T, v string) (traceID, parentID, flags string) {
	t.Helper()
	p := strings.Split(v, "-")
	if len(p) != 4 || p[0] != "00" || len(p[1]) != 32 || len(p[2]) != 16 || len(p[3]) != 2 {
		t.Fatalf("traceparent %q is not a version-00 traceparent", v)
	}
	return p[1], p[2], p[3]
}

// TestTraceContextReachesUpstream sends a miss with each kind of caller
// trace context and checks what the upstream received and what the
// access line says: a caller's trace is continued with the gateway's
// attempt span as the upstream's parent and the caller's tracestate
// passed on; none, or a malformed one, starts a new trace. It holds with
// spans exported or not, and with OTEL_SDK_DISABLED.
func TestTraceContextReachesUpstream(t *testing.T) {
	cases := []struct {
		name        string
		traceparent string
		continued   bool
	}{
		{"sampled caller", "00-" + callerTraceID + "-" + callerSpanID + "-01", true},
		{"unsampled caller", "00-" + callerTraceID + "-" + callerSpanID + "-00", true},
		{"none", "", false},
		{"upper-case hex", "00-" + strings.ToUpper(callerTraceID) + "-" + callerSpanID + "-01", false},
		{"zero trace id", "00-" + strings.Repeat("0", 32) + "-" + callerSpanID + "-01", false},
		{"version ff", "ff-" + callerTraceID + "-" + callerSpanID + "-01", false},
		{"short", "00-" + callerTraceID + "-" + callerSpanID[:15] + "-01", false},
	}
	for _, env := range []map[string]string{
		{"OTEL_TRACES_SAMPLER": "parentbased_always_on"},
		{},
		{"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"},
	} {
		t.Run(fmt.Sprint(env), func(t *testing.T) {
			tr, exp := newTracer(t, env)
			tg := tracedGateway(t, tr)
			for i, tc := range cases {
				exp.Reset()
				rid := fmt.Sprintf("tp-%d", i)
				h := []string{"Authorization", "Bearer " + bearerToken, "X-Request-Id", rid, "Tracestate", callerState}
				if tc.traceparent != "" {
					h = append(h, "Traceparent", tc.traceparent)
				}
				if resp, body := tg.get(t, fmt.Sprintf("/customers/trace-%d/signup", i), h...); resp.StatusCode != 200 {
					t.Fatalf("%s: status %d (%s)", tc.name, resp.StatusCode, body)
				}
				calls := tg.Upstream.requests()
				up := calls[len(calls)-1].Header
				tid, parent, flags := splitTraceparent(t, up.Get("Traceparent"))
				logTrace, logSpan := accessIDs(t, tg, rid)
				if tid != logTrace {
					t.Errorf("%s: upstream trace %s, access line %s; want the same", tc.name, tid, logTrace)
				}
				if parent == logSpan || parent == callerSpanID || logSpan == callerSpanID {
					t.Errorf("%s: upstream parent %s, access line span %s, caller span %s; want three spans", tc.name, parent, logSpan, callerSpanID)
				}
				if tc.continued {
					if tid != callerTraceID || flags != tc.traceparent[53:] {
						t.Errorf("%s: upstream traceparent %q; want trace %s with flags %s", tc.name, up.Get("Traceparent"), callerTraceID, tc.traceparent[53:])
					}
					if got := up.Get("Tracestate"); got != callerState {
						t.Errorf("%s: upstream tracestate %q; want the caller's", tc.name, got)
					}
				} else {
					if tid == callerTraceID {
						t.Errorf("%s: the invalid traceparent's trace was continued", tc.name)
					}
					if got := up.Get("Tracestate"); got != "" {
						t.Errorf("%s: upstream tracestate %q without a valid traceparent; want none", tc.name, got)
					}
				}
				// With the SDK recording, the parent is the attempt span,
				// a child of the access line's server span.
				spans := exp.GetSpans()
				if flags != "01" || env["OTEL_TRACES_SAMPLER"] == "" {
					continue
				}
				attempt := spanByID(t, spans, parent)
				server := spanByID(t, spans, logSpan)
				if attempt.SpanKind.String() != "client" || attempt.Parent.SpanID() != server.SpanContext.SpanID() {
					t.Errorf("%s: upstream parent is a %s span under %s; want the attempt span under the server span", tc.name, attempt.SpanKind, attempt.Parent.SpanID())
				}
				if tc.continued && server.Parent.SpanID().String() != callerSpanID {
					t.Errorf("%s: server span's parent %s; want the caller's %s", tc.name, server.Parent.SpanID(), callerSpanID)
				}
			}
		})
	}
}

func spanByID(t *testing.T, spans tracetest.SpanStubs, id string) tracetest.SpanStub {
	t.Helper()
	for _, s := range spans {
		if s.SpanContext.SpanID().String() == id {
			return s
		}
	}
	t.Fatalf("no span %s among %d", id, len(spans))
	return tracetest.SpanStub{}
}

func spansNamed(spans tracetest.SpanStubs, name string) tracetest.SpanStubs {
	var out tracetest.SpanStubs
	for _, s := range spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

func attrOf(s tracetest.SpanStub, key string) string {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

// TestSpans checks the spans of a miss whose first attempt fails, then
// of a hit: their names, kinds, attributes and parentage, and that no
// credential, bearer token or customer id is in any of them.
func TestSpans(t *testing.T) {
	tr, exp := newTracer(t, map[string]string{"OTEL_TRACES_SAMPLER": "always_on"})
	tg := tracedGateway(t, tr)
	var n int
	tg.Upstream.setHandler(func(w http.ResponseWriter, r *http.Request) {
		if n++; n == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		foundAnswer(w, r)
	})
	const id = "cust-7f3a9e"
	auth := []string{"Authorization", "Bearer " + bearerToken}
	if resp, body := tg.get(t, "/customers/"+id+"/signup", append(auth, "X-Request-Id", "span-miss")...); resp.StatusCode != 200 {
		t.Fatalf("miss: status %d (%s)", resp.StatusCode, body)
	}
	if resp, body := tg.get(t, "/customers/"+id+"/signup", append(auth, "X-Request-Id", "span-hit")...); resp.StatusCode != 200 || resp.Header.Get("X-Cache") != "HIT" {
		t.Fatalf("hit: status %d X-Cache %q (%s)", resp.StatusCode, resp.Header.Get("X-Cache"), body)
	}
	spans := exp.GetSpans()

	servers := spansNamed(spans, "GET /customers/{id}/signup")
	if len(servers) != 2 {
		t.Fatalf("%d server spans; want 2 (miss, hit)", len(servers))
	}
	missTrace, missSpan := accessIDs(t, tg, "span-miss")
	hitTrace, hitSpan := accessIDs(t, tg, "span-hit")
	for i, want := range []struct{ trace, span, cache string }{{missTrace, missSpan, "miss"}, {hitTrace, hitSpan, "hit"}} {
		s := servers[i]
		if s.SpanContext.TraceID().String() != want.trace || s.SpanContext.SpanID().String() != want.span {
			t.Errorf("%s server span %s/%s; access line %s/%s", want.cache, s.SpanContext.TraceID(), s.SpanContext.SpanID(), want.trace, want.span)
		}
		for k, v := range map[string]string{
			"http.request.method": "GET", "http.route": "/customers/{id}/signup", "http.response.status_code": "200",
			"bluetape.caller": "billing", "bluetape.cache.result": want.cache,
		} {
			if got := attrOf(s, k); got != v {
				t.Errorf("%s server span: %s = %q; want %q", want.cache, k, got, v)
			}
		}
		if s.SpanKind.String() != "server" {
			t.Errorf("%s server span kind %s", want.cache, s.SpanKind)
		}
	}

	attempts := spansNamed(spans, "GET")
	if len(attempts) != 2 {
		t.Fatalf("%d attempt spans; want 2 (a 503, then its retry)", len(attempts))
	}
	calls := tg.Upstream.requests()
	for i, a := range attempts {
		if a.SpanKind.String() != "client" || a.Parent.SpanID().String() != missSpan || a.SpanContext.TraceID().String() != missTrace {
			t.Errorf("attempt %d: %s span under %s in %s; want a client span under the miss's server span", i+1, a.SpanKind, a.Parent.SpanID(), a.SpanContext.TraceID())
		}
		if _, parent, _ := splitTraceparent(t, calls[i].Header.Get("Traceparent")); parent != a.SpanContext.SpanID().String() {
			t.Errorf("attempt %d: the upstream's traceparent names %s; want the attempt span %s", i+1, parent, a.SpanContext.SpanID())
		}
		if got := attrOf(a, "url.template"); got != "/integration/customer/{id}/signup" {
			t.Errorf("attempt %d: url.template %q", i+1, got)
		}
	}
	if got := attrOf(attempts[0], "http.response.status_code"); got != "503" || attempts[0].Status.Code.String() != "Error" {
		t.Errorf("first attempt: status %q, span status %s; want 503, Error", got, attempts[0].Status.Code)
	}
	if got := attrOf(attempts[1], "http.request.resend_count"); got != "1" {
		t.Errorf("retry: http.request.resend_count %q; want 1", got)
	}

	// Nothing secret, nor the customer id, in any span.
	for _, s := range spans {
		values := []string{s.Name, s.Status.Description}
		for _, kv := range s.Attributes {
			values = append(values, string(kv.Key), kv.Value.String())
		}
		for _, ev := range s.Events {
			values = append(values, ev.Name)
			for _, kv := range ev.Attributes {
				values = append(values, string(kv.Key), kv.Value.String())
			}
		}
		for _, kv := range s.Resource.Attributes() {
			values = append(values, kv.Value.String())
		}
		for _, v := range values {
			for _, secret := range []string{testKey, testAccount, bearerToken, id} {
				if strings.Contains(v, secret) {
					t.Errorf("span %q holds %q", s.Name, v)
				}
			}
		}
	}
}

// TestWaitSpan: a request that joins another's upstream call gets a wait
// span under its server span, and marks itself shared.
func TestWaitSpan(t *testing.T) {
	tr, exp := newTracer(t, map[string]string{"OTEL_TRACES_SAMPLER": "always_on"})
	tg := tracedGateway(t, tr)
	g := newGate(t)
	tg.Upstream.setHandler(g.hold(foundAnswer))
	url := tg.URL + "/customers/waited/signup"
	first := fetchAsync(t.Context(), url, "Authorization", "Bearer "+bearerToken, "X-Request-Id", "leader")
	g.waitEntered(t)
	second := fetchAsync(t.Context(), url, "Authorization", "Bearer "+bearerToken, "X-Request-Id", "waiter")
	gatewaytest.WaitFor(t, 10*time.Second, "both requests wait for the shared call", func() bool { return loadWaiters() == 2 })
	g.release()
	for _, ch := range []<-chan result{first, second} {
		if r := <-ch; r.err != nil || r.status != 200 {
			t.Fatalf("status %d, %v", r.status, r.err)
		}
	}
	wantCalls(t, tg, 1)

	spans := exp.GetSpans()
	_, leaderSpan := accessIDs(t, tg, "leader")
	_, waiterSpan := accessIDs(t, tg, "waiter")
	waits := spansNamed(spans, "wait for upstream call")
	if len(waits) != 1 {
		t.Fatalf("%d wait spans; want 1, the second request's", len(waits))
	}
	if w := waits[0]; w.Parent.SpanID().String() != waiterSpan || attrOf(w, "bluetape.shared") != "true" {
		t.Errorf("wait span under %s with bluetape.shared %q; want under %s, true", w.Parent.SpanID(), attrOf(w, "bluetape.shared"), waiterSpan)
	}
	if got := attrOf(spanByID(t, spans, waiterSpan), "bluetape.shared"); got != "true" {
		t.Errorf("waiter's server span: bluetape.shared %q; want true", got)
	}
	if a := spansNamed(spans, "GET"); len(a) != 1 || a[0].Parent.SpanID().String() != leaderSpan {
		t.Errorf("%d attempt spans; want 1 under the leader's server span", len(a))
	}
}

// TestTraceExemplars: a sampled request's exemplars on both duration
// histograms are its trace id, not its request id.
func TestTraceExemplars(t *testing.T) {
	tr, _ := newTracer(t, map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_always_off"})
	tg := tracedGateway(t, tr)
	tg.get(t, "/customers/exemplar/signup", "Authorization", "Bearer "+bearerToken, "X-Request-Id", "exemplar-sampled",
		"Traceparent", "00-"+callerTraceID+"-"+callerSpanID+"-01")
	_, body := obsScrape(t, tg.Registry, openMetrics)
	for _, re := range []string{
		`(?m)^bluetape_gateway_request_duration_seconds_bucket\{code="200",le="[^"]+"\} [0-9]+ # \{trace_id="` + callerTraceID + `"\} [0-9.e+-]+ [0-9.e+-]+$`,
		`(?m)^bluetape_gateway_upstream_request_duration_seconds_bucket\{outcome="200",le="[^"]+"\} [0-9]+ # \{trace_id="` + callerTraceID + `"\} [0-9.e+-]+ [0-9.e+-]+$`,
	} {
		if !regexp.MustCompile(re).MatchString(body) {
			t.Errorf("no exemplar matching %s in:\n%s", re, body)
		}
	}
	if strings.Contains(body, "exemplar-sampled") {
		t.Errorf("a sampled request's request id is an exemplar:\n%s", body)
	}
}
