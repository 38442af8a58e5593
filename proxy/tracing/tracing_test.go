package tracing

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bluetape/bluetape-gateway/proxy/tracing/otlptest"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

const (
	callerTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerSpan   = "00f067aa0ba902b7"
	callerParent = "00-" + callerTrace + "-" + callerSpan + "-01"
	callerState  = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
	secretToken  = "s3cr3t-bearer-token-value"
)

// traceIDWithRatio returns a trace id that TraceIDRatioBased samples
// exactly at ratios above r (it compares the id's last 8 bytes, shifted
// right once, with r·2⁶³).
func traceIDWithRatio(r float64) trace.TraceID {
	var tid trace.TraceID
	tid[0] = 1
	binary.BigEndian.PutUint64(tid[8:], uint64(r*(1<<63))<<1)
	return tid
}

// newTestTracer sets the tracer up from the environment with an
// in-memory exporter beside it.
func newTestTracer(t *testing.T, traceID *trace.TraceID) (*Tracer, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tr, shutdown, err := setup(t.Context(), Options{Version: "test"}, sdktrace.WithSyncer(exp))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = shutdown(context.Background()) })
	if traceID != nil {
		tr.newTraceID = func() trace.TraceID { return *traceID }
	}
	return tr, exp
}

func apiRequest(h map[string]string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://gateway.internal:8080/customers/cust-42/signup", nil)
	r.Header.Set("Authorization", "Bearer "+secretToken)
	for k, v := range h {
		r.Header.Set(k, v)
	}
	return r
}

// serve runs one request through the calls the gateway makes: server
// span, attempts upstream (each injecting the trace context into the
// upstream request's headers), end; it returns the upstream headers of
// each attempt and the ids the access log would get.
func serve(tr *Tracer, r *http.Request, attempts int) (upstream []http.Header, logTrace, logSpan string) {
	q := tr.Begin(r, time.Now())
	ctx := q.Context(r.Context())
	for i := 1; i <= attempts; i++ {
		actx, as := tr.StartUpstreamAttempt(ctx, Upstream{Host: "api.bluetape.com", Port: 443, Scheme: "https"}, i)
		h := http.Header{"X-Bluetape-Key": {"key-value"}}
		Inject(actx, h)
		upstream = append(upstream, h)
		status := 200
		if i < attempts {
			status = 503
		}
		EndUpstreamAttempt(as, status, "")
	}
	tid, sid, _ := q.IDs()
	if ctid, csid, _ := TraceIDs(ctx); ctid != tid.String() || csid != sid.String() {
		panic("the span in the context is not the server span of Begin")
	}
	q.End(ServerResult{Status: 200, Caller: "billing-service", Cache: "miss"})
	return upstream, tid.String(), sid.String()
}

func parseTraceparent(t *testing.T, v string) (traceID, parentID, flags string) {
	t.Helper()
	parts := strings.Split(v, "-")
	if len(parts) != 4 || parts[0] != "00" {
		t.Fatalf("traceparent %q is not version 00", v)
	}
	return parts[1], parts[2], parts[3]
}

func spanByName(t *testing.T, spans tracetest.SpanStubs, name string) tracetest.SpanStub {
	t.Helper()
	for _, s := range spans {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no span named %q among %d", name, len(spans))
	return tracetest.SpanStub{}
}

func attrs(s tracetest.SpanStub) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes {
		m[kv.Key] = kv.Value
	}
	return m
}

func TestPropagation(t *testing.T) {
	cases := map[string]struct {
		header    map[string]string
		continued bool
		state     string
	}{
		"caller trace continued":       {header: map[string]string{"Traceparent": callerParent}, continued: true},
		"caller tracestate passed on":  {header: map[string]string{"Traceparent": callerParent, "Tracestate": callerState}, continued: true, state: callerState},
		"no traceparent: new trace":    {},
		"malformed traceparent":        {header: map[string]string{"Traceparent": "00-" + callerTrace + "-" + callerSpan}},
		"upper-case hex refused":       {header: map[string]string{"Traceparent": "00-" + strings.ToUpper(callerTrace) + "-" + callerSpan + "-01"}},
		"zero trace id refused":        {header: map[string]string{"Traceparent": "00-00000000000000000000000000000000-" + callerSpan + "-01"}},
		"version ff refused":           {header: map[string]string{"Traceparent": "ff-" + callerTrace + "-" + callerSpan + "-01"}},
		"tracestate without parent":    {header: map[string]string{"Tracestate": callerState}},
		"lower-case header name works": {header: map[string]string{"traceparent": callerParent}, continued: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			otlptest.SetEnv(t, nil)
			tr, exp := newTestTracer(t, nil)
			up, logTrace, logSpan := serve(tr, apiRequest(tc.header), 1)
			tid, parent, _ := parseTraceparent(t, up[0].Get("Traceparent"))
			if tc.continued && tid != callerTrace {
				t.Errorf("upstream trace id %s; want the caller's %s", tid, callerTrace)
			}
			if !tc.continued && tid == callerTrace {
				t.Errorf("upstream trace id is the caller's invalid one")
			}
			if logTrace != tid {
				t.Errorf("access log trace_id %s; upstream's %s", logTrace, tid)
			}
			if got := up[0].Get("Tracestate"); got != tc.state {
				t.Errorf("upstream tracestate %q; want %q", got, tc.state)
			}
			if got := up[0].Values("X-Bluetape-Key"); len(got) != 1 {
				t.Errorf("Inject changed other headers: X-Bluetape-Key %q", got)
			}
			spans := exp.GetSpans()
			if tc.continued {
				// The caller's sampled flag is followed: the spans record.
				server := spanByName(t, spans, "GET /customers/{id}/signup")
				attempt := spanByName(t, spans, "GET")
				if got := server.Parent.SpanID().String(); got != callerSpan || !server.Parent.IsRemote() {
					t.Errorf("server span's parent %s (remote %v); want the caller's %s", got, server.Parent.IsRemote(), callerSpan)
				}
				if parent != attempt.SpanContext.SpanID().String() {
					t.Errorf("upstream traceparent's parent %s; want the attempt span %s", parent, attempt.SpanContext.SpanID())
				}
				if logSpan != server.SpanContext.SpanID().String() {
					t.Errorf("access log span_id %s; want the server span %s", logSpan, server.SpanContext.SpanID())
				}
			}
		})
	}
}

func TestSpanContent(t *testing.T) {
	otlptest.SetEnv(t, nil)
	tr, exp := newTestTracer(t, nil)
	r := apiRequest(map[string]string{"Traceparent": callerParent, "X-Request-Id": "rid-1"})
	up, _, _ := serve(tr, r, 2)

	spans := exp.GetSpans()
	if len(spans) != 3 {
		t.Fatalf("%d spans; want server + 2 attempts", len(spans))
	}
	server := spanByName(t, spans, "GET /customers/{id}/signup")
	if server.SpanKind != trace.SpanKindServer {
		t.Errorf("server span kind %v", server.SpanKind)
	}
	want := map[attribute.Key]string{
		"http.request.method":       "GET",
		"http.route":                "/customers/{id}/signup",
		"url.scheme":                "http",
		"server.address":            "gateway.internal",
		"server.port":               "8080",
		"http.response.status_code": "200",
		"bluetape.caller":           "billing-service",
		"bluetape.cache.result":     "miss",
	}
	got := attrs(server)
	for k, v := range want {
		if got[k].String() != v {
			t.Errorf("server span %s = %q; want %q", k, got[k].String(), v)
		}
	}
	var attempts []tracetest.SpanStub
	for _, s := range spans {
		if s.Name == "GET" {
			attempts = append(attempts, s)
		}
	}
	if len(attempts) != 2 {
		t.Fatalf("%d attempt spans; want 2 (a retry shows)", len(attempts))
	}
	for i, a := range attempts {
		if a.SpanKind != trace.SpanKindClient {
			t.Errorf("attempt %d kind %v", i+1, a.SpanKind)
		}
		if a.Parent.SpanID() != server.SpanContext.SpanID() {
			t.Errorf("attempt %d's parent %s; want the server span", i+1, a.Parent.SpanID())
		}
		if _, parent, _ := parseTraceparent(t, up[i].Get("Traceparent")); parent != a.SpanContext.SpanID().String() {
			t.Errorf("attempt %d's upstream request names parent %s; want its span %s", i+1, parent, a.SpanContext.SpanID())
		}
		at := attrs(a)
		if at["url.template"].String() != UpstreamURLTemplate || at["server.address"].String() != "api.bluetape.com" {
			t.Errorf("attempt %d attributes %v", i+1, a.Attributes)
		}
	}
	first, second := attrs(attempts[0]), attrs(attempts[1])
	if first["http.response.status_code"].AsInt64() != 503 || attempts[0].Status.Code != codes.Error {
		t.Errorf("first attempt: status %v, span status %v; want 503 and an error", first["http.response.status_code"], attempts[0].Status)
	}
	if _, ok := first["http.request.resend_count"]; ok {
		t.Errorf("first attempt carries http.request.resend_count")
	}
	if second["http.request.resend_count"].AsInt64() != 1 {
		t.Errorf("retry's http.request.resend_count %v; want 1", second["http.request.resend_count"])
	}
}

// TestNoSecretsOrIDsInSpans: whatever the request carries, spans hold no
// header value, no path and no customer id.
func TestNoSecretsOrIDsInSpans(t *testing.T) {
	otlptest.SetEnv(t, nil)
	t.Setenv("OTEL_TRACES_SAMPLER", "always_on")
	tr, exp := newTestTracer(t, nil)
	r := apiRequest(map[string]string{"X-Bluetape-Key": "caller-sent-key", "Cookie": "session=abc"})
	ctx, span := tr.StartServer(r.Context(), r)
	wctx, ws := tr.StartWait(ctx, WaitLocal)
	AddEvent(wctx, EventBreakerOpen)
	EndWait(ws, false, trace.SpanContext{})
	AddEvent(ctx, EventQuotaRefused)
	_, as := tr.StartUpstreamAttempt(ctx, Upstream{Host: "api.bluetape.com"}, 1)
	EndUpstreamAttempt(as, 0, "timeout")
	EndServer(span, ServerResult{Status: 504, Caller: "billing-service", Cache: "miss"})

	spans := exp.GetSpans()
	if len(spans) != 3 {
		t.Fatalf("%d spans; want 3", len(spans))
	}
	for _, s := range spans {
		text := s.Name
		for _, kv := range s.Attributes {
			text += " " + string(kv.Key) + "=" + kv.Value.String()
		}
		for _, e := range s.Events {
			text += " " + e.Name
		}
		for _, bad := range []string{secretToken, "Bearer", "caller-sent-key", "session=abc", "cust-42"} {
			if strings.Contains(text, bad) {
				t.Errorf("span %q holds %q: %s", s.Name, bad, text)
			}
		}
	}
	server := spanByName(t, spans, "GET /customers/{id}/signup")
	if server.Status.Code != codes.Error || len(server.Events) != 1 || server.Events[0].Name != EventQuotaRefused {
		t.Errorf("server span: status %v, events %v; want an error with the quota event", server.Status, server.Events)
	}
	wait := spanByName(t, spans, waitLocalSpanName)
	if wait.Parent.SpanID() != server.SpanContext.SpanID() || len(wait.Events) != 1 || wait.Events[0].Name != EventBreakerOpen {
		t.Errorf("wait span: parent %s, events %v", wait.Parent.SpanID(), wait.Events)
	}
	if attrs(spanByName(t, spans, "GET"))["error.type"].String() != "timeout" {
		t.Errorf("timed out attempt has no error.type timeout")
	}
}

func TestWaitLinksLeader(t *testing.T) {
	otlptest.SetEnv(t, nil)
	t.Setenv("OTEL_TRACES_SAMPLER", "always_on")
	tr, exp := newTestTracer(t, nil)
	lctx, leader := tr.StartServer(context.Background(), apiRequest(nil))
	actx, attempt := tr.StartUpstreamAttempt(lctx, Upstream{}, 1)

	ctx, span := tr.StartServer(context.Background(), apiRequest(nil))
	_, ws := tr.StartWait(ctx, WaitReplica)
	EndWait(ws, true, trace.SpanContextFromContext(actx))
	EndUpstreamAttempt(attempt, 200, "")
	EndServer(span, ServerResult{Status: 200, Shared: true})
	EndServer(leader, ServerResult{Status: 200})

	wait := spanByName(t, exp.GetSpans(), waitRemoteSpanName)
	if len(wait.Links) != 1 || wait.Links[0].SpanContext.SpanID() != trace.SpanContextFromContext(actx).SpanID() {
		t.Errorf("wait span links %v; want the leader's attempt", wait.Links)
	}
	if !attrs(wait)["bluetape.shared"].AsBool() {
		t.Errorf("wait span without bluetape.shared=true")
	}
}

func TestUnmatchedAndOddMethods(t *testing.T) {
	otlptest.SetEnv(t, nil)
	t.Setenv("OTEL_TRACES_SAMPLER", "always_on")
	tr, exp := newTestTracer(t, nil)
	r := httptest.NewRequest("BREW", "/no/such/path/cust-42", nil)
	_, span := tr.StartUnmatched(r.Context(), r)
	EndServer(span, ServerResult{Status: 405})
	s := exp.GetSpans()[0]
	a := attrs(s)
	if s.Name != "_OTHER" || a["http.request.method"].String() != "_OTHER" || a["http.request.method_original"].String() != "BREW" {
		t.Errorf("span %q attributes %v", s.Name, s.Attributes)
	}
	if _, ok := a["http.route"]; ok {
		t.Errorf("unmatched request has http.route")
	}
}

func TestSampler(t *testing.T) {
	low, high := traceIDWithRatio(0.001), traceIDWithRatio(0.5)
	notSampledParent := "00-" + callerTrace + "-" + callerSpan + "-00"
	cases := map[string]struct {
		env     map[string]string
		tid     trace.TraceID
		parent  string
		sampled bool
	}{
		"default samples 1% of new traces: in":         {tid: low, sampled: true},
		"default samples 1% of new traces: out":        {tid: high, sampled: false},
		"default follows a sampled caller":             {tid: high, parent: callerParent, sampled: true},
		"default follows a caller that did not sample": {tid: low, parent: notSampledParent, sampled: false},
		"ratio alone changes the default":              {env: map[string]string{"OTEL_TRACES_SAMPLER_ARG": "0.75"}, tid: high, sampled: true},
		"env sampler wins over the default":            {env: map[string]string{"OTEL_TRACES_SAMPLER": "always_on"}, tid: high, parent: notSampledParent, sampled: true},
		"env sampler always_off":                       {env: map[string]string{"OTEL_TRACES_SAMPLER": "always_off"}, tid: low, parent: callerParent, sampled: false},
		"env parentbased_traceidratio with arg":        {env: map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.75"}, tid: high, sampled: true},
		"env traceidratio ignores the caller":          {env: map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"}, tid: high, parent: callerParent, sampled: false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			otlptest.SetEnv(t, tc.env)
			tr, exp := newTestTracer(t, &tc.tid)
			h := map[string]string{}
			if tc.parent != "" {
				h["Traceparent"] = tc.parent
			}
			up, _, _ := serve(tr, apiRequest(h), 1)
			_, _, flags := parseTraceparent(t, up[0].Get("Traceparent"))
			if got := flags == "01"; got != tc.sampled {
				t.Errorf("upstream traceparent flags %s; want sampled=%v", flags, tc.sampled)
			}
			if got := len(exp.GetSpans()) > 0; got != tc.sampled {
				t.Errorf("%d spans exported; want sampled=%v", len(exp.GetSpans()), tc.sampled)
			}
		})
	}
}

func TestSetupErrors(t *testing.T) {
	cases := map[string]struct {
		env  map[string]string
		want string
	}{
		"unknown sampler":    {env: map[string]string{"OTEL_TRACES_SAMPLER": "jaeger_remote"}, want: `OTEL_TRACES_SAMPLER: unsupported sampler "jaeger_remote"`},
		"ratio not a number": {env: map[string]string{"OTEL_TRACES_SAMPLER_ARG": "1%"}, want: `OTEL_TRACES_SAMPLER_ARG: "1%" is not a ratio between 0 and 1`},
		"ratio above one":    {env: map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"}, want: `OTEL_TRACES_SAMPLER_ARG: "2" is not a ratio between 0 and 1`},
		"json protocol":      {env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, want: `OTEL_EXPORTER_OTLP_PROTOCOL: unsupported protocol "http/json" (want http/protobuf or grpc)`},
		"traces protocol":    {env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "udp"}, want: `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: unsupported protocol "udp" (want http/protobuf or grpc)`},
		"zipkin exporter":    {env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, want: `OTEL_TRACES_EXPORTER: unsupported exporter "zipkin" (want otlp or none)`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			otlptest.SetEnv(t, tc.env)
			_, _, err := Setup(t.Context(), Options{})
			if err == nil || err.Error() != tc.want {
				t.Errorf("got %v; want %q", err, tc.want)
			}
		})
	}
}

func TestExportSettings(t *testing.T) {
	cases := map[string]struct {
		env       map[string]string
		exporting bool
		protocol  string
	}{
		"nothing set":             {},
		"endpoint":                {env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, exporting: true, protocol: "http/protobuf"},
		"traces endpoint, grpc":   {env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, exporting: true, protocol: "grpc"},
		"traces protocol wins":    {env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}, exporting: true, protocol: "grpc"},
		"SDK disabled":            {env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "TRUE"}},
		"SDK disabled=false":      {env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "false"}, exporting: true, protocol: "http/protobuf"},
		"exporter none":           {env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}},
		"protocol but no address": {env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			exporting, protocol, err := exportSettings(func(k string) string { return tc.env[k] })
			if err != nil || exporting != tc.exporting || protocol != tc.protocol {
				t.Errorf("got %v, %q, %v; want %v, %q", exporting, protocol, err, tc.exporting, tc.protocol)
			}
		})
	}
}

// TestPropagationWithoutExport: with no endpoint, or OTEL_SDK_DISABLED,
// nothing is exported but the caller's trace still reaches the upstream
// with a fresh parent span id, and a request without one gets a trace.
func TestPropagationWithoutExport(t *testing.T) {
	for _, env := range []map[string]string{
		{},
		{"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"},
	} {
		otlptest.SetEnv(t, env)
		tr, shutdown, err := Setup(t.Context(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		if tr.Exporting() {
			t.Errorf("%v: exporting", env)
		}
		up, logTrace, logSpan := serve(tr, apiRequest(map[string]string{"Traceparent": callerParent, "Tracestate": callerState}), 1)
		tid, parent, flags := parseTraceparent(t, up[0].Get("Traceparent"))
		if tid != callerTrace || parent == callerSpan || parent == logSpan || parent == "0000000000000000" || flags != "01" {
			t.Errorf("%v: upstream traceparent %q; want the caller's trace %s, sampled, with the attempt span as parent", env, up[0].Get("Traceparent"), callerTrace)
		}
		if logTrace != callerTrace || logSpan == callerSpan || len(logSpan) != 16 {
			t.Errorf("%v: access log ids %s %s", env, logTrace, logSpan)
		}
		if got := up[0].Get("Tracestate"); got != callerState {
			t.Errorf("%v: upstream tracestate %q", env, got)
		}
		up, logTrace, _ = serve(tr, apiRequest(nil), 1)
		if tid, _, _ := parseTraceparent(t, up[0].Get("Traceparent")); tid != logTrace || tid == callerTrace || len(tid) != 32 {
			t.Errorf("%v: new trace %s, log %s", env, tid, logTrace)
		}
		if err := shutdown(t.Context()); err != nil {
			t.Errorf("%v: shutdown: %v", env, err)
		}
	}
}

func TestIDs(t *testing.T) {
	if tid, sid, s := TraceIDs(context.Background()); tid != "" || sid != "" || s {
		t.Errorf("no span: got %q %q %v", tid, sid, s)
	}
	ctx := Extract(context.Background(), http.Header{"Traceparent": {callerParent}})
	tid, sid, sampled := IDs(ctx)
	if tid.String() != callerTrace || sid.String() != callerSpan || !sampled {
		t.Errorf("got %s %s %v", tid, sid, sampled)
	}
}

func TestSplitHostPort(t *testing.T) {
	cases := map[string]struct {
		host string
		port int
		ok   bool
	}{
		"gateway:8080":  {"gateway", 8080, true},
		"gateway":       {"gateway", 0, true},
		"[::1]:9090":    {"::1", 9090, true},
		"[::1]":         {"::1", 0, true},
		"":              {"", 0, false},
		":8080":         {"", 0, false},
		"gateway:99999": {"", 0, false},
		"gateway:":      {"", 0, false},
		"a:b:c":         {"", 0, false},
	}
	for in, want := range cases {
		host, port, ok := splitHostPort(in)
		if host != want.host || port != want.port || ok != want.ok {
			t.Errorf("splitHostPort(%q) = %q, %d, %v; want %q, %d, %v", in, host, port, ok, want.host, want.port, want.ok)
		}
	}
}

// TestCacheHitSpan: a request that never needs its span as a parent gets
// ids at Begin; its span is made at End, with those ids and Begin's start
// time, only when it is sampled.
func TestCacheHitSpan(t *testing.T) {
	for _, sampled := range []bool{false, true} {
		otlptest.SetEnv(t, nil)
		if sampled {
			t.Setenv("OTEL_TRACES_SAMPLER", "always_on")
		} else {
			t.Setenv("OTEL_TRACES_SAMPLER", "always_off")
		}
		tr, exp := newTestTracer(t, nil)
		start := time.Now().Add(-time.Millisecond)
		r := apiRequest(map[string]string{"Traceparent": callerParent})
		q := tr.Begin(r, start)
		tid, sid, s := q.IDs()
		q.End(ServerResult{Status: 200, Caller: "billing-service", Cache: "hit"})
		if tid.String() != callerTrace || !sid.IsValid() || s != sampled {
			t.Errorf("sampled=%v: ids %s %s sampled %v", sampled, tid, sid, s)
		}
		spans := exp.GetSpans()
		if !sampled {
			if len(spans) != 0 {
				t.Errorf("not sampled: %d spans exported", len(spans))
			}
			continue
		}
		if len(spans) != 1 {
			t.Fatalf("sampled: %d spans; want 1", len(spans))
		}
		got := spans[0]
		if got.SpanContext.TraceID() != tid || got.SpanContext.SpanID() != sid || got.Parent.SpanID().String() != callerSpan {
			t.Errorf("span %s/%s parent %s; want %s/%s under the caller's", got.SpanContext.TraceID(), got.SpanContext.SpanID(), got.Parent.SpanID(), tid, sid)
		}
		if !got.StartTime.Equal(start) {
			t.Errorf("span starts %v; want Begin's %v", got.StartTime, start)
		}
		if attrs(got)["bluetape.cache.result"].String() != "hit" {
			t.Errorf("attributes %v", got.Attributes)
		}
	}
}

func TestParentFromHeader(t *testing.T) {
	// Every traceparent here is judged as OpenTelemetry's propagator
	// judges it.
	for _, v := range []string{
		callerParent,
		"00-" + callerTrace + "-" + callerSpan + "-00",
		"00-" + callerTrace + "-" + callerSpan + "-03",
		"00-" + callerTrace + "-" + callerSpan + "-09",
		"00-" + callerTrace + "-" + callerSpan + "-01-extra",
		"01-" + callerTrace + "-" + callerSpan + "-01-extra",
		"01-" + callerTrace + "-" + callerSpan + "-01",
		"01-" + callerTrace + "-" + callerSpan + "-01x",
		"ff-" + callerTrace + "-" + callerSpan + "-01",
		"0g-" + callerTrace + "-" + callerSpan + "-01",
		"00-" + callerTrace + "-0000000000000000-01",
		"00-" + strings.ToUpper(callerTrace) + "-" + callerSpan + "-01",
		"00_" + callerTrace + "-" + callerSpan + "-01",
		"",
		"00",
	} {
		h := http.Header{"Traceparent": {v}, "Tracestate": {callerState}}
		got := parentFromHeader(h)
		want := trace.SpanContextFromContext(Extract(context.Background(), h))
		if !got.Equal(want) {
			t.Errorf("%q: got %v; want %v", v, got, want)
		}
	}
}

// TestAppendIDs: the log's hex is hex.EncodeToString's, for every byte.
func TestAppendIDs(t *testing.T) {
	var tid trace.TraceID
	var sid trace.SpanID
	for i := 0; i < 256; i += len(tid) {
		for j := range tid {
			tid[j] = byte(i + j)
		}
		copy(sid[:], tid[8:])
		if got, want := string(AppendTraceID([]byte("x"), tid)), "x"+hex.EncodeToString(tid[:]); got != want {
			t.Errorf("AppendTraceID %q; want %q", got, want)
		}
		if got, want := string(AppendSpanID(nil, sid)), hex.EncodeToString(sid[:]); got != want {
			t.Errorf("AppendSpanID %q; want %q", got, want)
		}
	}
}
