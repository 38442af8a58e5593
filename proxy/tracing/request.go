package tracing

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"net/http"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Request is the trace of one API request, from Begin to End: its
// server span's ids and sampling decision are known at once, but the
// span itself (the SDK's, which allocates) is made only when needed: when
// the request goes upstream (Context), or at End when it is sampled. A
// cache hit that is not sampled thus costs a few random numbers and no
// allocation (but for parsing a tracestate the caller sent).
//
// A Request is used by the goroutine serving the request; it is kept by
// value in the request's own state.
type Request struct {
	t      *Tracer
	r      *http.Request
	route  string
	start  time.Time
	parent trace.SpanContext // the caller's, when valid
	sc     trace.SpanContext // the server span's
	span   trace.Span        // the SDK's span, once started
	ctx    context.Context   // ctx with span, once started
}

// Begin starts the trace of API request r on the route Route, begun at
// start: it continues the caller's valid traceparent (and tracestate) or
// starts a new trace, and decides whether the server span is sampled.
func (t *Tracer) Begin(r *http.Request, start time.Time) Request {
	return t.begin(r, Route, start)
}

// BeginUnmatched is Begin for a request no route served.
func (t *Tracer) BeginUnmatched(r *http.Request, start time.Time) Request {
	return t.begin(r, "", start)
}

func (t *Tracer) begin(r *http.Request, route string, start time.Time) Request {
	q := Request{t: t, r: r, route: route, start: start, parent: parentFromHeader(r.Header)}
	scc := trace.SpanContextConfig{SpanID: newSpanID(), TraceState: q.parent.TraceState()}
	if q.parent.IsValid() {
		scc.TraceID = q.parent.TraceID()
	} else {
		scc.TraceID = t.newTraceID()
	}
	// The SDK's sampler would decide the same, but needs the parent in a
	// context, which costs two allocations.
	sampled := q.parent.IsSampled()
	if !q.parent.IsValid() || !t.followParent {
		res := t.root.ShouldSample(sdktrace.SamplingParameters{
			ParentContext: r.Context(), TraceID: scc.TraceID, Name: serverSpanName, Kind: trace.SpanKindServer,
		})
		sampled = res.Decision == sdktrace.RecordAndSample
	}
	if sampled {
		scc.TraceFlags = trace.FlagsSampled
	}
	q.sc = trace.NewSpanContext(scc)
	return q
}

// IDs returns the server span's trace id and span id, and whether it is
// sampled, without allocating. hex.AppendEncode(b, traceID[:]) writes one
// into a log line; traceID.String() makes the exemplar's label value.
func (q *Request) IDs() (traceID trace.TraceID, spanID trace.SpanID, sampled bool) {
	return q.sc.TraceID(), q.sc.SpanID(), q.sc.IsSampled()
}

// Context returns ctx with the server span started, for the work that
// needs it as parent (upstream attempts, waits); the first call starts
// it. ctx should be the request's context.
func (q *Request) Context(ctx context.Context) context.Context {
	if q.span == nil {
		q.ctx, q.span = q.startSpan(ctx)
	}
	return q.ctx
}

func (q *Request) startSpan(ctx context.Context) (context.Context, trace.Span) {
	if q.parent.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, q.parent)
	}
	ctx = context.WithValue(ctx, presetIDsKey{}, q.sc)
	return q.t.startServer(ctx, q.r, q.route, []trace.SpanStartOption{trace.WithTimestamp(q.start)})
}

// End records res on the server span and ends it. A span not started
// yet is made now only if it is sampled.
func (q *Request) End(res ServerResult) {
	if q.span == nil {
		if !q.sc.IsSampled() {
			return
		}
		_, q.span = q.startSpan(context.Background())
	}
	EndServer(q.span, res)
}

// presetIDsKey keys the server span's ids, chosen at Begin, in the
// context the SDK starts the span with; presetIDs hands them to the SDK.
type presetIDsKey struct{}

// presetIDs is the SDK's id generator: the ids Begin chose for a server
// span, else random ones like the SDK's own. The server span's children
// inherit the preset in their context, but have the server span as
// parent: they get random ids.
type presetIDs struct{}

func preset(ctx context.Context) (trace.SpanContext, bool) {
	sc, ok := ctx.Value(presetIDsKey{}).(trace.SpanContext)
	if !ok || trace.SpanContextFromContext(ctx).SpanID() == sc.SpanID() {
		return trace.SpanContext{}, false
	}
	return sc, true
}

func (presetIDs) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	if sc, ok := preset(ctx); ok {
		return sc.TraceID(), sc.SpanID()
	}
	return newTraceID(), newSpanID()
}

func (presetIDs) NewSpanID(ctx context.Context, traceID trace.TraceID) trace.SpanID {
	if sc, ok := preset(ctx); ok && sc.TraceID() == traceID {
		return sc.SpanID()
	}
	return newSpanID()
}

func newTraceID() trace.TraceID {
	var id trace.TraceID
	for !id.IsValid() {
		putUint64(id[:8], rand.Uint64())
		putUint64(id[8:], rand.Uint64())
	}
	return id
}

func newSpanID() trace.SpanID {
	var id trace.SpanID
	for !id.IsValid() {
		putUint64(id[:], rand.Uint64())
	}
	return id
}

func putUint64(b []byte, v uint64) { binary.LittleEndian.PutUint64(b, v) }

// parentFromHeader parses the W3C traceparent (and tracestate) in h
// without allocating (but for a tracestate); it returns a zero
// SpanContext when there is none or it is invalid. It follows the
// specification as OpenTelemetry's TraceContext propagator does.
func parentFromHeader(h http.Header) trace.SpanContext {
	v := h["Traceparent"]
	if len(v) == 0 {
		return trace.SpanContext{}
	}
	tp := v[0]
	// version "-" trace-id "-" parent-id "-" flags: 2+1+32+1+16+1+2.
	if len(tp) < 55 || tp[2] != '-' || tp[35] != '-' || tp[52] != '-' || !lowerHex(tp[:2]) || tp[:2] == "ff" {
		return trace.SpanContext{}
	}
	if tp[:2] == "00" && len(tp) != 55 || len(tp) > 55 && tp[55] != '-' {
		return trace.SpanContext{}
	}
	var scc trace.SpanContextConfig
	var flags [1]byte
	if !decodeHex(scc.TraceID[:], tp[3:35]) || !decodeHex(scc.SpanID[:], tp[36:52]) || !decodeHex(flags[:], tp[53:55]) {
		return trace.SpanContext{}
	}
	if tp[:2] == "00" && flags[0] > 3 {
		return trace.SpanContext{}
	}
	scc.TraceFlags = trace.TraceFlags(flags[0]) & (trace.FlagsSampled | trace.FlagsRandom)
	scc.Remote = true
	if ts := h["Tracestate"]; len(ts) > 0 {
		// An invalid tracestate is dropped; the traceparent still holds.
		scc.TraceState, _ = trace.ParseTraceState(ts[0])
	}
	sc := trace.NewSpanContext(scc)
	if !sc.IsValid() {
		return trace.SpanContext{}
	}
	return sc
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// decodeHex decodes s, lower-case hex of exactly 2·len(dst) characters,
// into dst in one pass without branching on the digits; it reports false
// for any other character.
func decodeHex(dst []byte, s string) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	var bad byte
	for i := range dst {
		hi, lo := unhex[s[2*i]], unhex[s[2*i+1]]
		bad |= hi | lo
		dst[i] = hi<<4 | lo
	}
	return bad <= 0xf
}

// unhex maps a lower-case hex digit to its value and any other byte to
// 0xff.
var unhex = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = byte(c - '0')
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c] = byte(c - 'a' + 10)
	}
	return t
}()

// hexPairs holds the two lower-case hex digits of every byte.
var hexPairs = func() (t [256][2]byte) {
	const digits = "0123456789abcdef"
	for i := range t {
		t[i] = [2]byte{digits[i>>4], digits[i&0xf]}
	}
	return t
}()

// AppendTraceID appends id in lower-case hex (32 digits) to b, as
// hex.AppendEncode does but with one table lookup per byte: the access
// log writes it on every request.
func AppendTraceID(b []byte, id trace.TraceID) []byte { return appendHex(b, id[:]) }

// AppendSpanID appends id in lower-case hex (16 digits) to b.
func AppendSpanID(b []byte, id trace.SpanID) []byte { return appendHex(b, id[:]) }

func appendHex(b, src []byte) []byte {
	for _, v := range src {
		p := hexPairs[v]
		b = append(b, p[0], p[1])
	}
	return b
}
