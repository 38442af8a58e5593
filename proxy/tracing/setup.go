// Package tracing joins the gateway's requests to distributed traces with
// OpenTelemetry: it continues a caller's W3C trace context, makes the
// gateway's spans (one server span per API request, one client span per
// upstream attempt, one span per wait for another request's upstream
// call), passes the trace context on to the upstream, and exports spans
// with OTLP when an endpoint is configured.
//
// Trace context is always propagated, whether spans are exported or not:
// with no endpoint, or with OTEL_SDK_DISABLED=true, spans still get real
// ids (for the upstream's traceparent and the access log) but nothing
// records or exports them.
//
// The per-request functions cost nothing beyond the span itself when the
// span is not sampled: attributes and events are built only for spans
// that record.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// DefaultServiceName is the service.name of the gateway's spans unless
// OTEL_SERVICE_NAME (or service.name in OTEL_RESOURCE_ATTRIBUTES) says
// otherwise.
const DefaultServiceName = "bluetape-gateway"

// DefaultSampleRatio is the share of new traces sampled by the default
// sampler, parentbased_traceidratio.
const DefaultSampleRatio = 0.01

// instrumentationName names the gateway's tracer (the instrumentation
// scope of its spans).
const instrumentationName = "github.com/bluetape/bluetape-gateway/proxy/tracing"

// Options configures Setup.
type Options struct {
	// Version is the service.version of the gateway's spans; empty leaves
	// it out.
	Version string
	// Logger receives the OpenTelemetry SDK's own errors (a failed
	// export, say). If nil, they go to slog.Default().
	Logger *slog.Logger
	// SpanProcessors receive the spans beside the OTLP exporter, whether
	// it is configured or not: tests read spans back through an
	// in-memory exporter's processor (sdktrace.NewSimpleSpanProcessor).
	SpanProcessors []sdktrace.SpanProcessor
}

// Tracer makes the gateway's spans. It is safe for concurrent use.
type Tracer struct {
	root         sdktrace.Sampler     // decides new traces
	followParent bool                 // a remote parent's flag decides
	newTraceID   func() trace.TraceID // the ids of new traces
	tracer       trace.Tracer
	exporting    bool
	protocol     string
}

// Exporting reports whether spans are exported.
func (t *Tracer) Exporting() bool { return t.exporting }

// Protocol returns the OTLP protocol spans are exported with
// ("http/protobuf" or "grpc"), or "" when they are not exported.
func (t *Tracer) Protocol() string { return t.protocol }

// Setup builds the gateway's tracer from the standard OpenTelemetry
// environment variables, which the OpenTelemetry SDK and its OTLP
// exporters read themselves:
//
//   - Spans are exported only when OTEL_EXPORTER_OTLP_ENDPOINT or
//     OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, OTEL_SDK_DISABLED is not
//     "true" and OTEL_TRACES_EXPORTER is unset or "otlp" ("none" turns
//     export off). The exporter reads the endpoint, OTEL_EXPORTER_OTLP_HEADERS,
//     timeouts, TLS and compression settings; the batch span processor
//     reads OTEL_BSP_*.
//   - OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else OTEL_EXPORTER_OTLP_PROTOCOL,
//     chooses the exporter: "http/protobuf" (the default) or "grpc".
//   - OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES describe the service;
//     service.name is bluetape-gateway by default.
//   - OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG choose the sampler
//     with the specification's names (always_on, always_off, traceidratio,
//     parentbased_always_on, parentbased_always_off,
//     parentbased_traceidratio). Unset, the sampler is
//     parentbased_traceidratio with the ratio OTEL_TRACES_SAMPLER_ARG, by
//     default 0.01: a caller's sampling decision is followed, and 1% of
//     new traces are sampled. These two are read here rather than by the
//     SDK because the gateway decides sampling before it makes a span.
//
// An unsupported protocol, exporter or sampler, or a sampler argument that
// is not a ratio, is an error naming the variable: the SDK would otherwise
// fall back to sampling every trace.
//
// Setup returns the tracer and the function that flushes the spans not
// yet exported and stops the exporter, within its context's deadline. The
// caller must call it once at shutdown. Setup sets the OpenTelemetry error
// handler (a process-wide setting) so that the SDK's errors are logged
// through o.Logger; it does not set the global tracer provider or
// propagator.
func Setup(ctx context.Context, o Options) (*Tracer, func(context.Context) error, error) {
	return setup(ctx, o)
}

// setup is Setup with extra tracer provider options, which tests use to
// add an in-memory exporter or fix the span ids.
func setup(ctx context.Context, o Options, extra ...sdktrace.TracerProviderOption) (*Tracer, func(context.Context) error, error) {
	exporting, protocol, err := exportSettings(os.Getenv)
	if err != nil {
		return nil, nil, err
	}
	sampler, root, followParent, err := samplerFromEnv(os.Getenv)
	if err != nil {
		return nil, nil, err
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.Default()
	}
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		logger.Warn("tracing", "error", err)
	}))

	attrs := []resource.Option{resource.WithAttributes(semconv.ServiceName(DefaultServiceName))}
	if o.Version != "" {
		attrs = append(attrs, resource.WithAttributes(semconv.ServiceVersion(o.Version)))
	}
	// Later options win: the environment overrides the defaults.
	attrs = append(attrs, resource.WithTelemetrySDK(), resource.WithFromEnv(), resource.WithSchemaURL(semconv.SchemaURL))
	res, err := resource.New(ctx, attrs...)
	if err != nil {
		return nil, nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}

	// The explicit sampler overrides the SDK's own reading of
	// OTEL_TRACES_SAMPLER; Begin asks it before any span exists.
	tpOpts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sampler),
		sdktrace.WithIDGenerator(presetIDs{}),
	}
	if exporting {
		var exp sdktrace.SpanExporter
		switch protocol {
		case "grpc":
			exp, err = otlptracegrpc.New(ctx)
		default:
			exp, err = otlptracehttp.New(ctx)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("creating the OTLP %s trace exporter: %w", protocol, err)
		}
		tpOpts = append(tpOpts, sdktrace.WithBatcher(exp))
	}
	for _, p := range o.SpanProcessors {
		tpOpts = append(tpOpts, sdktrace.WithSpanProcessor(p))
	}
	tp := sdktrace.NewTracerProvider(append(tpOpts, extra...)...)
	t := &Tracer{
		root:         root,
		followParent: followParent,
		newTraceID:   newTraceID,
		tracer:       tp.Tracer(instrumentationName, trace.WithInstrumentationVersion(o.Version), trace.WithSchemaURL(semconv.SchemaURL)),
		exporting:    exporting,
	}
	if exporting {
		t.protocol = protocol
	}
	return t, tp.Shutdown, nil
}

// Propagation returns a tracer that propagates trace context and exports
// nothing, whatever the environment says: a caller's trace is continued
// (and its sampled flag passed on), and new traces are not sampled. It is
// the tracer of a gateway or client built without one.
func Propagation() *Tracer {
	root := sdktrace.NeverSample()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(root)), sdktrace.WithIDGenerator(presetIDs{}))
	return &Tracer{
		root:         root,
		followParent: true,
		newTraceID:   newTraceID,
		tracer:       tp.Tracer(instrumentationName, trace.WithSchemaURL(semconv.SchemaURL)),
	}
}

// exportSettings decides from the environment whether spans are exported
// and with which OTLP protocol. The exporters read everything else.
func exportSettings(getenv func(string) string) (exporting bool, protocol string, err error) {
	if v := strings.TrimSpace(getenv("OTEL_SDK_DISABLED")); strings.EqualFold(v, "true") {
		return false, "", nil
	}
	switch v := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")); strings.ToLower(v) {
	case "", "otlp":
	case "none":
		return false, "", nil
	default:
		return false, "", fmt.Errorf("OTEL_TRACES_EXPORTER: unsupported exporter %q (want otlp or none)", v)
	}
	protoVar := "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	protocol = strings.TrimSpace(getenv(protoVar))
	if protocol == "" {
		protoVar = "OTEL_EXPORTER_OTLP_PROTOCOL"
		protocol = strings.TrimSpace(getenv(protoVar))
	}
	switch protocol {
	case "":
		protocol = "http/protobuf"
	case "http/protobuf", "grpc":
	default:
		return false, "", fmt.Errorf("%s: unsupported protocol %q (want http/protobuf or grpc)", protoVar, protocol)
	}
	if getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" {
		return false, "", nil
	}
	return true, protocol, nil
}

// samplerFromEnv builds the sampler that OTEL_TRACES_SAMPLER and
// OTEL_TRACES_SAMPLER_ARG name, with the specification's names and
// defaults (a ratio sampler named without an argument samples every
// trace), or, when OTEL_TRACES_SAMPLER is unset, parentbased_traceidratio
// with OTEL_TRACES_SAMPLER_ARG or 0.01. Unlike the SDK, which would fall
// back to sampling every trace, an unknown name or a ratio outside [0, 1]
// is an error.
//
// It also returns the decision for a new trace (or any trace when the
// sampler ignores the parent) and whether a remote parent's sampled flag
// decides, as it does for the parentbased_ samplers: Begin asks these
// rather than the whole sampler, which would need the parent in a context.
func samplerFromEnv(getenv func(string) string) (s, root sdktrace.Sampler, followParent bool, err error) {
	name := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER")))
	arg := strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER_ARG"))
	ratio := func(def float64) (float64, error) {
		if arg == "" {
			return def, nil
		}
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			return 0, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG: %q is not a ratio between 0 and 1", arg)
		}
		return r, nil
	}
	def := 1.0
	switch name {
	case "":
		name, def = "parentbased_traceidratio", DefaultSampleRatio
		fallthrough
	case "parentbased_traceidratio", "traceidratio":
		r, err := ratio(def)
		if err != nil {
			return nil, nil, false, err
		}
		root = sdktrace.TraceIDRatioBased(r)
	case "always_on", "parentbased_always_on":
		root = sdktrace.AlwaysSample()
	case "always_off", "parentbased_always_off":
		root = sdktrace.NeverSample()
	default:
		return nil, nil, false, errors.New("OTEL_TRACES_SAMPLER: unsupported sampler " + strconv.Quote(name))
	}
	if strings.HasPrefix(name, "parentbased_") {
		return sdktrace.ParentBased(root), root, true, nil
	}
	return root, root, false, nil
}
