package tracing

import (
	"context"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Route is the http.route of the API's one route.
const Route = "/customers/{id}/signup"

// UpstreamURLTemplate is the url.template of the upstream request: the
// customer id is never in a span.
const UpstreamURLTemplate = "/integration/customer/{id}/signup"

// Attribute keys of the gateway's own span attributes.
const (
	// CallerKey is the caller's name: a configured name, "anonymous", or
	// the client address when the API is open.
	CallerKey = attribute.Key("bluetape.caller")
	// CacheResultKey is the cache lookup's result: hit, miss, stale or
	// negative_hit.
	CacheResultKey = attribute.Key("bluetape.cache.result")
	// SharedKey marks a request answered by another request's (or
	// replica's) upstream call.
	SharedKey = attribute.Key("bluetape.shared")
)

// Event names.
const (
	EventBreakerOpen   = "circuit breaker open"
	EventQuotaRefused  = "upstream quota refused"
	EventCapacityShed  = "upstream capacity refused"
	serverSpanName     = "GET " + Route
	upstreamSpanName   = "GET"
	waitLocalSpanName  = "wait for upstream call"
	waitRemoteSpanName = "wait for another replica's upstream call"
)

// Span start options, built once: a variadic argument would otherwise be
// a fresh slice per call.
var (
	serverStart   = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}
	upstreamStart = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}
	internalStart = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal)}
)

var traceContext propagation.TraceContext

// headerCarrier reads and writes the W3C trace context headers of an
// http.Header without canonicalising their names on every call (which
// allocates): "traceparent" and "tracestate" map straight to their
// canonical keys. Converting it to an interface does not allocate.
type headerCarrier http.Header

func canonical(key string) string {
	switch key {
	case "traceparent":
		return "Traceparent"
	case "tracestate":
		return "Tracestate"
	}
	return textproto.CanonicalMIMEHeaderKey(key)
}

func (c headerCarrier) Get(key string) string {
	v := c[canonical(key)]
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func (c headerCarrier) Set(key, value string) { c[canonical(key)] = []string{value} }

func (c headerCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// Extract returns ctx with the caller's trace context from h as the
// remote parent, or ctx itself when h holds no valid traceparent (a
// malformed one is ignored). A tracestate is kept only with a valid
// traceparent.
func Extract(ctx context.Context, h http.Header) context.Context {
	if len(h["Traceparent"]) == 0 {
		return ctx
	}
	return traceContext.Extract(ctx, headerCarrier(h))
}

// Inject writes ctx's span context into h as traceparent (and tracestate,
// when there is one), replacing any there. It writes nothing when ctx has
// no valid span context.
func Inject(ctx context.Context, h http.Header) {
	delete(h, "Traceparent")
	delete(h, "Tracestate")
	traceContext.Inject(ctx, headerCarrier(h))
}

// StartServer starts the server span of an API request r on the route
// Route, as a child of the caller's trace context in r's headers, or of a
// new trace when there is none. It returns ctx with the span, which
// upstream attempts and waits started from it are children of. Its
// attributes (HTTP semantic conventions, no header value, no path, no
// customer id) are set only when the span records.
//
// The span must be ended with EndServer.
func (t *Tracer) StartServer(ctx context.Context, r *http.Request) (context.Context, trace.Span) {
	return t.startServer(ctx, r, Route, nil)
}

// StartUnmatched starts the server span of a request no route served (an
// unknown path, another method): like StartServer, with no http.route.
func (t *Tracer) StartUnmatched(ctx context.Context, r *http.Request) (context.Context, trace.Span) {
	return t.startServer(ctx, r, "", nil)
}

// startServer starts a server span; with at (Request's use), ctx already
// holds the parent and at is the span's start.
func (t *Tracer) startServer(ctx context.Context, r *http.Request, route string, at []trace.SpanStartOption) (context.Context, trace.Span) {
	opts := serverStart
	if at == nil {
		ctx = Extract(ctx, r.Header)
	} else {
		opts = append(append(make([]trace.SpanStartOption, 0, 2), serverStart...), at...)
	}
	name := serverSpanName
	method, known := knownMethod(r.Method)
	if route == "" || method != http.MethodGet {
		name = method
		if route != "" {
			name += " " + route
		}
	}
	ctx, span := t.tracer.Start(ctx, name, opts...)
	if span.IsRecording() {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		attrs := make([]attribute.KeyValue, 0, 8)
		attrs = append(attrs, semconv.HTTPRequestMethodKey.String(method), semconv.URLScheme(scheme))
		if !known {
			attrs = append(attrs, semconv.HTTPRequestMethodOriginal(r.Method))
		}
		if route != "" {
			attrs = append(attrs, semconv.HTTPRoute(route))
		}
		if host, port, ok := splitHostPort(r.Host); ok {
			attrs = append(attrs, semconv.ServerAddress(host))
			if port > 0 {
				attrs = append(attrs, semconv.ServerPort(port))
			}
		}
		if r.ProtoMajor > 0 {
			attrs = append(attrs, semconv.NetworkProtocolVersion(protocolVersion(r)))
		}
		span.SetAttributes(attrs...)
	}
	return ctx, span
}

// knownMethod returns m when it is a method of HTTP's specification, else
// "_OTHER" and false, as the semantic conventions ask: the span name and
// attribute stay bounded whatever a caller sends.
func knownMethod(m string) (string, bool) {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m, true
	}
	return "_OTHER", false
}

func protocolVersion(r *http.Request) string {
	switch {
	case r.ProtoMajor == 1 && r.ProtoMinor == 1:
		return "1.1"
	case r.ProtoMajor == 2:
		return "2"
	case r.ProtoMajor == 1 && r.ProtoMinor == 0:
		return "1.0"
	}
	return strconv.Itoa(r.ProtoMajor) + "." + strconv.Itoa(r.ProtoMinor)
}

// splitHostPort splits a Host header's value; ok is false when it is
// empty or malformed. port is 0 when there is none.
func splitHostPort(hostport string) (host string, port int, ok bool) {
	host, p, err := net.SplitHostPort(hostport)
	if err != nil {
		// No port, or not host:port at all.
		if strings.ContainsAny(hostport, ":[]") && !(strings.HasPrefix(hostport, "[") && strings.HasSuffix(hostport, "]")) {
			return "", 0, false
		}
		return strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]"), 0, hostport != ""
	}
	port, err = strconv.Atoi(p)
	if err != nil || port < 1 || port > 65535 || host == "" {
		return "", 0, false
	}
	return host, port, true
}

// ServerResult is what EndServer records about an API request.
type ServerResult struct {
	// Status is the HTTP status answered.
	Status int
	// Caller is the caller's name; "" or "-" (not identified) leaves it
	// out.
	Caller string
	// Cache is the cache lookup's result; "" (no lookup) leaves it out.
	Cache string
	// Shared is set when another request's upstream call answered.
	Shared bool
}

// EndServer records res on span, a server span from StartServer, and ends
// it. A 5xx status marks the span as an error.
func EndServer(span trace.Span, res ServerResult) {
	if span.IsRecording() {
		attrs := make([]attribute.KeyValue, 0, 4)
		attrs = append(attrs, semconv.HTTPResponseStatusCode(res.Status))
		if res.Caller != "" && res.Caller != "-" {
			attrs = append(attrs, CallerKey.String(res.Caller))
		}
		if res.Cache != "" {
			attrs = append(attrs, CacheResultKey.String(res.Cache))
		}
		if res.Shared {
			attrs = append(attrs, SharedKey.Bool(true))
		}
		span.SetAttributes(attrs...)
		if res.Status >= 500 {
			span.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(res.Status)))
			span.SetStatus(codes.Error, "")
		}
	}
	span.End()
}

// Upstream describes the upstream for client spans.
type Upstream struct {
	// Host and Port are the upstream's server.address and server.port.
	Host string
	Port int
	// Scheme is "http" or "https".
	Scheme string
}

// StartUpstreamAttempt starts the client span of one upstream attempt
// (attempt counts from 1; a retry is attempt 2 and shows as a second
// span) as a child of ctx's span. The upstream request must carry the
// returned context's trace context: Inject(ctx, req.Header). The span
// holds the upstream's address and the URL template, never the URL with
// the customer id, and never a header.
//
// The span must be ended with EndUpstreamAttempt.
func (t *Tracer) StartUpstreamAttempt(ctx context.Context, up Upstream, attempt int) (context.Context, trace.Span) {
	ctx, span := t.tracer.Start(ctx, upstreamSpanName, upstreamStart...)
	if span.IsRecording() {
		attrs := make([]attribute.KeyValue, 0, 6)
		attrs = append(attrs, semconv.HTTPRequestMethodGet, semconv.URLTemplate(UpstreamURLTemplate))
		if up.Host != "" {
			attrs = append(attrs, semconv.ServerAddress(up.Host))
		}
		if up.Port > 0 {
			attrs = append(attrs, semconv.ServerPort(up.Port))
		}
		if up.Scheme != "" {
			attrs = append(attrs, semconv.URLScheme(up.Scheme))
		}
		if attempt > 1 {
			attrs = append(attrs, semconv.HTTPRequestResendCount(attempt-1))
		}
		span.SetAttributes(attrs...)
	}
	return ctx, span
}

// EndUpstreamAttempt records an attempt's result on span and ends it:
// status is the upstream's HTTP status (0 when there was no answer), and
// outcome the gateway's name for a failure ("timeout", "error"), or ""
// for an answer. A 5xx status or a failure marks the span as an error.
// outcome must not hold an error's text: it could quote what the upstream
// sent.
func EndUpstreamAttempt(span trace.Span, status int, outcome string) {
	if span.IsRecording() {
		if status > 0 {
			span.SetAttributes(semconv.HTTPResponseStatusCode(status))
		}
		switch {
		case outcome != "":
			span.SetAttributes(semconv.ErrorTypeKey.String(outcome))
			span.SetStatus(codes.Error, "")
		case status >= 500:
			span.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(status)))
			span.SetStatus(codes.Error, "")
		}
	}
	span.End()
}

// WaitKind says whose upstream call a request waits for.
type WaitKind int

const (
	// WaitLocal is a wait for another request's call in this process.
	WaitLocal WaitKind = iota
	// WaitReplica is a wait for another replica's call (shared mode).
	WaitReplica
)

// StartWait starts a span for a wait for another request's (or
// replica's) upstream call, as a child of ctx's span. End it with
// EndWait.
func (t *Tracer) StartWait(ctx context.Context, kind WaitKind) (context.Context, trace.Span) {
	name := waitLocalSpanName
	if kind == WaitReplica {
		name = waitRemoteSpanName
	}
	return t.tracer.Start(ctx, name, internalStart...)
}

// EndWait ends a wait span. answered tells whether the wait produced the
// answer (else the request goes on to call the upstream itself). leader,
// when valid, is the span context of the call waited for; it is linked,
// so that the trace shows which call answered.
func EndWait(span trace.Span, answered bool, leader trace.SpanContext) {
	if span.IsRecording() {
		span.SetAttributes(SharedKey.Bool(answered))
		if leader.IsValid() {
			span.AddLink(trace.Link{SpanContext: leader})
		}
	}
	span.End()
}

// RecordWait records a wait that is over, from start until now, as a span
// of kind under ctx's span, ended as EndWait ends it: for a wait known to
// have been one only once it ended (a request learns that it waited for
// another request's call when the call's answer arrives).
func (t *Tracer) RecordWait(ctx context.Context, kind WaitKind, start time.Time, answered bool, leader trace.SpanContext) {
	if !trace.SpanContextFromContext(ctx).IsSampled() {
		// Not sampled: the span would not record.
		return
	}
	name := waitLocalSpanName
	if kind == WaitReplica {
		name = waitRemoteSpanName
	}
	_, span := t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindInternal), trace.WithTimestamp(start))
	EndWait(span, answered, leader)
}

// AddEvent adds the event name (one of the Event constants) to ctx's
// span, if it records.
func AddEvent(ctx context.Context, name string) {
	span := trace.SpanFromContext(ctx)
	if span.IsRecording() {
		span.AddEvent(name)
	}
}

// IDs returns the trace id and span id of ctx's span and whether it is
// sampled, without allocating; both ids are zero when ctx has no span.
// hex.AppendEncode(b, traceID[:]) writes one into a log line.
func IDs(ctx context.Context) (traceID trace.TraceID, spanID trace.SpanID, sampled bool) {
	sc := trace.SpanContextFromContext(ctx)
	return sc.TraceID(), sc.SpanID(), sc.IsSampled()
}

// TraceIDs is IDs in hex, as the access log and exemplars carry them;
// both are "" when ctx has no span. It allocates the two strings.
func TraceIDs(ctx context.Context) (traceID, spanID string, sampled bool) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return "", "", false
	}
	return sc.TraceID().String(), sc.SpanID().String(), sc.IsSampled()
}
