package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
)

// TestHelp checks that -h lists the flags, says where the settings are
// documented, and exits 0.
func TestHelp(t *testing.T) {
	out, err := exec.CommandContext(t.Context(), gatewaytest.Built.Path, "-h").CombinedOutput()
	if err != nil {
		t.Fatalf("gateway -h: %v\n%s", err, out)
	}
	for _, want := range []string{"-config", "-sandbox", "-version", "docs/configuration.md"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("gateway -h does not mention %q:\n%s", want, out)
		}
	}
}
