package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
	"github.com/bluetape/bluetape-gateway/proxy/tracing/otlptest"
)

// TestTracesExported runs the gateway exporting to a real OTLP receiver
// with every request sampled. A caller's traced request reaches the
// upstream in the caller's trace with the gateway's attempt span as
// parent; the spans, held by the batch processor until shutdown, are
// flushed at SIGTERM; the access line names the server span.
func TestTracesExported(t *testing.T) {
	const (
		key, account = "e2e-trace-key-1a2b3c4d", "e2e-trace-account-5e6f"
		callerTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
		callerSpan   = "00f067aa0ba902b7"
		callerState  = "congo=t61rcWkgMzE"
	)
	rcv := otlptest.Start(t)
	up := newBluetape(t)
	g := gatewaytest.Built.Start(t, []string{
		"BLUETAPE_BASE_URL=" + up.base(),
		"BLUETAPE_API_KEY=" + key,
		"BLUETAPE_ACCOUNT_ID=" + account,
		"GATEWAY_SHUTDOWN_TIMEOUT=20s",
		"GATEWAY_DRAIN_DELAY=0s",
		"OTEL_SDK_DISABLED=", "OTEL_TRACES_EXPORTER=", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=",
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=", "OTEL_TRACES_SAMPLER_ARG=", "OTEL_SERVICE_NAME=",
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + rcv.HTTPEndpoint,
		"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
		"OTEL_TRACES_SAMPLER=always_on",
		// Nothing is sent before shutdown: the flush at SIGTERM sends it.
		"OTEL_BSP_SCHEDULE_DELAY=600000",
	})
	gatewaytest.WaitFor(t, 10*time.Second, "the tracing line at start", func() bool {
		return len(g.Stdout.Records("tracing: exporting spans with OTLP")) > 0
	})
	if l := g.Stdout.Records("tracing: exporting spans with OTLP")[0]; l["protocol"] != "http/protobuf" {
		t.Errorf("startup line %v; want protocol http/protobuf", l)
	}

	req, err := http.NewRequest(http.MethodGet, g.API+"/customers/traced/signup", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Request-Id", "e2e-traced")
	req.Header.Set("Traceparent", "00-"+callerTrace+"-"+callerSpan+"-01")
	req.Header.Set("Tracestate", callerState)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d; want 200", resp.StatusCode)
	}
	if n := len(rcv.Spans()); n != 0 {
		t.Fatalf("%d spans exported before shutdown; the batch processor should hold them", n)
	}

	g.Stop(t)
	spans := rcv.WaitForSpans(t, 2, 10*time.Second)
	server, attempt := otlptest.Named(spans, "GET /customers/{id}/signup"), otlptest.Named(spans, "GET")
	if server == nil || attempt == nil {
		t.Fatalf("%d spans received without the server and the attempt span", len(spans))
	}
	if server.TraceID() != callerTrace || server.ParentID() != callerSpan {
		t.Errorf("server span in %s under %s; want the caller's trace %s under %s", server.TraceID(), server.ParentID(), callerTrace, callerSpan)
	}
	if attempt.TraceID() != callerTrace || attempt.ParentID() != server.SpanID() {
		t.Errorf("attempt span in %s under %s; want %s under the server span %s", attempt.TraceID(), attempt.ParentID(), callerTrace, server.SpanID())
	}
	if v, _ := server.Attr("http.route"); v != "/customers/{id}/signup" {
		t.Errorf("server span http.route %q", v)
	}
	if got := server.Resource["service.name"]; got != "bluetape-gateway" {
		t.Errorf("service.name %q; want bluetape-gateway", got)
	}

	received := up.received()
	if len(received) != 1 {
		t.Fatalf("upstream got %d requests; want 1", len(received))
	}
	if want := fmt.Sprintf("00-%s-%s-01", callerTrace, attempt.SpanID()); received[0].parent != want {
		t.Errorf("upstream traceparent %q; want %q (the attempt span as parent)", received[0].parent, want)
	}
	if received[0].state != callerState {
		t.Errorf("upstream tracestate %q; want the caller's", received[0].state)
	}

	var line map[string]any
	for _, l := range g.Stdout.Records("request") {
		if l["request_id"] == "e2e-traced" {
			line = l
		}
	}
	if line == nil || line["trace_id"] != server.TraceID() || line["span_id"] != server.SpanID() {
		t.Errorf("access line %v; want trace_id %s span_id %s", line, server.TraceID(), server.SpanID())
	}
	for _, s := range spans {
		for _, kv := range s.Attributes {
			if v := kv.Value.String(); strings.Contains(v, key) || strings.Contains(v, account) {
				t.Errorf("span %q attribute %s holds a credential", s.Name, kv.Key)
			}
		}
	}
}
