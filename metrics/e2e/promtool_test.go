package e2e

import (
	"bytes"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/bluetape/bluetape-gateway/metrics"
	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
)

// TestPromtoolCheckMetrics scrapes a running gateway after traffic of
// every kind, and lints the text exposition with promtool: any problem it
// reports fails the test.
func TestPromtoolCheckMetrics(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not found in PATH: install it (Debian: apt-get install prometheus) to run this test")
	}
	gw := gatewaytest.Built.Start(t, []string{"GATEWAY_RATE_LIMIT=0.001", "GATEWAY_RATE_BURST=" + strconv.Itoa(anonymousBurst)}, "-sandbox")
	send(t, gw, anonymousTraffic)

	exposition := scrape(t, gw, "")
	checkContract(t, exposition)

	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(exposition)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	if err != nil || out.Len() > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out.String())
	}
}

// checkContract checks that the exposition holds the contract's metric
// families with their types and label names, every name of metrics.Names,
// and the Go runtime and process collectors.
func checkContract(t *testing.T, exposition string) {
	t.Helper()
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(exposition))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	contract := []struct {
		name   string
		typ    dto.MetricType
		labels string
	}{
		{"bluetape_gateway_requests_total", dto.MetricType_COUNTER, "code"},
		{"bluetape_gateway_request_duration_seconds", dto.MetricType_HISTOGRAM, "code"},
		{"bluetape_gateway_upstream_requests_total", dto.MetricType_COUNTER, "outcome"},
		{"bluetape_gateway_upstream_request_duration_seconds", dto.MetricType_HISTOGRAM, "outcome"},
		{"bluetape_gateway_cache_lookups_total", dto.MetricType_COUNTER, "result"},
		{"bluetape_gateway_cache_entries", dto.MetricType_GAUGE, ""},
		{"bluetape_gateway_rate_limited_total", dto.MetricType_COUNTER, "caller"},
	}
	for _, c := range contract {
		f := families[c.name]
		if f == nil {
			t.Errorf("/metrics lacks %s", c.name)
			continue
		}
		if f.GetType() != c.typ {
			t.Errorf("%s is a %v; want %v", c.name, f.GetType(), c.typ)
		}
		for _, m := range f.GetMetric() {
			var names []string
			for _, l := range m.GetLabel() {
				names = append(names, l.GetName())
			}
			if got := strings.Join(names, ","); got != c.labels {
				t.Errorf("%s has labels %q; want %q", c.name, got, c.labels)
			}
		}
	}
	for _, name := range append(metrics.Names(), "go_goroutines", "process_resident_memory_bytes") {
		if families[name] == nil {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}
