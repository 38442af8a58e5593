package e2e

import (
	"testing"

	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
)

func TestMain(m *testing.M) { gatewaytest.Main(m) }
