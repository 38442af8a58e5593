package otlptest

import "testing"

// envVars are the OpenTelemetry variables the gateway's tracing reads.
var envVars = []string{
	"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
	"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL",
	"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
	"OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_EXPORTER_OTLP_HEADERS",
}

// SetEnv sets, for the rest of the test, each OpenTelemetry variable the
// gateway's tracing reads to its value in env, empty when env has none,
// and any other variable env holds: the tracing set up in the test sees
// only the configuration it gives, whatever the environment of the test
// process. Like testing.T.Setenv, it cannot be used in a parallel test.
func SetEnv(tb testing.TB, env map[string]string) {
	tb.Helper()
	for _, k := range envVars {
		tb.Setenv(k, env[k])
	}
	for k, v := range env {
		tb.Setenv(k, v)
	}
}
