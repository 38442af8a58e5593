package openapi_test

import (
	"testing"

	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
)

// TestMain builds the gateway once: the tests here drive it through its
// external contract only (environment, ports, HTTP).
func TestMain(m *testing.M) { gatewaytest.Main(m) }
