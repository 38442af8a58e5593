package tracing

import (
	"context"
	"testing"
	"time"

	"github.com/bluetape/bluetape-gateway/proxy/tracing/otlptest"
)

// TestExportOTLP exports through each protocol to a real OTLP receiver
// and reads the spans back: the resource, the parentage, the export
// headers from OTEL_EXPORTER_OTLP_HEADERS, and the flush at shutdown.
func TestExportOTLP(t *testing.T) {
	rcv := otlptest.Start(t)
	for _, tc := range []struct {
		protocol, endpoint string
	}{
		{"http/protobuf", rcv.HTTPEndpoint},
		{"grpc", rcv.GRPCEndpoint},
	} {
		t.Run(tc.protocol, func(t *testing.T) {
			otlptest.SetEnv(t, nil)
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", tc.endpoint)
			t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", tc.protocol)
			t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-collector-tenant=gateways")
			t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "k8s.pod.name=gateway-0")
			t.Setenv("OTEL_TRACES_SAMPLER", "always_on")
			before := len(rcv.Spans())
			tr, shutdown, err := Setup(t.Context(), Options{Version: "1.2.3"})
			if err != nil {
				t.Fatal(err)
			}
			if !tr.Exporting() || tr.Protocol() != tc.protocol {
				t.Fatalf("exporting %v with %q; want %s", tr.Exporting(), tr.Protocol(), tc.protocol)
			}
			_, logTrace, logSpan := serve(tr, apiRequest(nil), 1)
			// The batch processor holds the spans; shutdown must flush them.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := shutdown(ctx); err != nil {
				t.Fatalf("shutdown: %v", err)
			}
			spans := rcv.WaitForSpans(t, before+2, 20*time.Second)[before:]
			server, attempt := otlptest.Named(spans, "GET /customers/{id}/signup"), otlptest.Named(spans, "GET")
			if server == nil || attempt == nil {
				t.Fatalf("received %d spans without the server and attempt spans", len(spans))
			}
			if server.TraceID() != logTrace || server.SpanID() != logSpan || server.ParentID() != "" {
				t.Errorf("server span %s/%s parent %q; want %s/%s, a root", server.TraceID(), server.SpanID(), server.ParentID(), logTrace, logSpan)
			}
			if attempt.TraceID() != logTrace || attempt.ParentID() != logSpan {
				t.Errorf("attempt span in %s under %s; want %s under %s", attempt.TraceID(), attempt.ParentID(), logTrace, logSpan)
			}
			if v, _ := server.Attr("http.route"); v != Route {
				t.Errorf("http.route %q", v)
			}
			for k, want := range map[string]string{"service.name": DefaultServiceName, "service.version": "1.2.3", "k8s.pod.name": "gateway-0"} {
				if got := server.Resource[k]; got != want {
					t.Errorf("resource %s = %q; want %q", k, got, want)
				}
			}
			if got := server.Headers.Get("X-Collector-Tenant"); got != "gateways" {
				t.Errorf("export header x-collector-tenant %q; want gateways", got)
			}
		})
	}
}

func TestServiceNameFromEnv(t *testing.T) {
	rcv := otlptest.Start(t)
	otlptest.SetEnv(t, nil)
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", rcv.HTTPEndpoint+"/v1/traces")
	t.Setenv("OTEL_SERVICE_NAME", "gateway-eu")
	t.Setenv("OTEL_TRACES_SAMPLER", "always_on")
	tr, shutdown, err := Setup(t.Context(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	serve(tr, apiRequest(nil), 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	s := rcv.WaitForSpans(t, 2, 20*time.Second)[0]
	if got := s.Resource["service.name"]; got != "gateway-eu" {
		t.Errorf("service.name %q; want gateway-eu", got)
	}
}
