// Package otlptest is an OTLP trace receiver for tests: it accepts
// OTLP/HTTP protobuf on /v1/traces and OTLP/gRPC on loopback, decodes the
// requests with OpenTelemetry's own protobuf types and keeps the spans,
// so that a test can read back what a process exported.
package otlptest

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
)

// Span is one received span with its resource's and scope's attributes.
type Span struct {
	*tracepb.Span
	// Resource holds the resource's attributes as strings.
	Resource map[string]string
	// Headers holds the request headers (HTTP) or metadata (gRPC) the span
	// came with.
	Headers http.Header
}

// TraceID returns the span's trace id in hex.
func (s Span) TraceID() string { return hex.EncodeToString(s.Span.TraceId) }

// SpanID returns the span's id in hex.
func (s Span) SpanID() string { return hex.EncodeToString(s.Span.SpanId) }

// ParentID returns the span's parent's id in hex, "" for a root span.
func (s Span) ParentID() string { return hex.EncodeToString(s.Span.ParentSpanId) }

// Attr returns the span attribute key as a string ("" when absent) and
// whether it is present.
func (s Span) Attr(key string) (string, bool) { return attr(s.Span.Attributes, key) }

// Named returns the last of spans named name, or nil when there is none.
func Named(spans []Span, name string) *Span {
	var found *Span
	for i := range spans {
		if spans[i].Name == name {
			found = &spans[i]
		}
	}
	return found
}

func attr(kvs []*commonpb.KeyValue, key string) (string, bool) {
	for _, kv := range kvs {
		if kv.Key == key {
			return valueString(kv.Value), true
		}
	}
	return "", false
}

func valueString(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_BoolValue:
		if x.BoolValue {
			return "true"
		}
		return "false"
	default:
		return v.String()
	}
}

// Receiver is a running OTLP receiver. Create it with Start.
type Receiver struct {
	// HTTPEndpoint is the OTLP/HTTP base URL (http://127.0.0.1:port), for
	// OTEL_EXPORTER_OTLP_ENDPOINT with the http/protobuf protocol.
	HTTPEndpoint string
	// GRPCEndpoint is the OTLP/gRPC URL (http://127.0.0.1:port), for
	// OTEL_EXPORTER_OTLP_ENDPOINT with the grpc protocol.
	GRPCEndpoint string

	mu      sync.Mutex
	spans   []Span
	changed chan struct{} // closed and replaced when spans are added
}

// Start starts a receiver on two free loopback ports and stops it when
// the test ends.
func Start(t testing.TB) *Receiver {
	t.Helper()
	r := &Receiver{changed: make(chan struct{})}

	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("otlptest: listening: %v", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", r.serveHTTP)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(hl) }()
	r.HTTPEndpoint = "http://" + hl.Addr().String()

	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = hs.Close()
		t.Fatalf("otlptest: listening: %v", err)
	}
	gs := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(gs, grpcService{r: r})
	go func() { _ = gs.Serve(gl) }()
	r.GRPCEndpoint = "http://" + gl.Addr().String()

	t.Cleanup(func() {
		_ = hs.Close()
		gs.Stop()
	})
	return r
}

// Spans returns the spans received so far.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...)
}

// WaitForSpans waits until at least n spans have arrived and returns
// them; it fails the test after limit.
func (r *Receiver) WaitForSpans(t testing.TB, n int, limit time.Duration) []Span {
	t.Helper()
	timer := time.NewTimer(limit)
	defer timer.Stop()
	for {
		r.mu.Lock()
		spans, changed := append([]Span(nil), r.spans...), r.changed
		r.mu.Unlock()
		if len(spans) >= n {
			return spans
		}
		select {
		case <-changed:
		case <-timer.C:
			t.Fatalf("otlptest: %d spans received after %v; want %d", len(spans), limit, n)
			return nil
		}
	}
}

func (r *Receiver) add(req *coltracepb.ExportTraceServiceRequest, h http.Header) {
	var got []Span
	for _, rs := range req.GetResourceSpans() {
		res := map[string]string{}
		for _, kv := range rs.GetResource().GetAttributes() {
			res[kv.Key] = valueString(kv.Value)
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				got = append(got, Span{Span: s, Resource: res, Headers: h})
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.spans = append(r.spans, got...)
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *Receiver) serveHTTP(w http.ResponseWriter, req *http.Request) {
	var body io.Reader = http.MaxBytesReader(w, req.Body, 16<<20)
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		defer zr.Close()
		body = zr
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if ct := req.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		http.Error(w, "unsupported content type "+ct, http.StatusUnsupportedMediaType)
		return
	}
	var msg coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(raw, &msg); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.add(&msg, req.Header.Clone())
	out, err := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = io.Copy(w, bytes.NewReader(out))
}

type grpcService struct {
	coltracepb.UnimplementedTraceServiceServer
	r *Receiver
}

func (g grpcService) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	if req == nil {
		return nil, errors.New("empty request")
	}
	h := http.Header{}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		for k, vs := range md {
			for _, v := range vs {
				h.Add(k, v)
			}
		}
	}
	g.r.add(req, h)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}
