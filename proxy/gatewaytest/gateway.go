package gatewaytest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// mainPackage is the import path of the gateway's command.
const mainPackage = "github.com/bluetape/bluetape-gateway"

// Binary is the gateway command built for the process tests of one test
// binary: Built, by Main.
type Binary struct {
	// Path is where the binary is; empty until BuildAndRun has built it.
	Path string
}

// Built is the gateway built by Main for the tests of this test binary.
var Built Binary

// Main builds the gateway into Built with go build and flags, runs the
// tests of m and exits, as BuildAndRun describes. A package whose tests
// run the gateway calls it from TestMain:
//
//	func TestMain(m *testing.M) { gatewaytest.Main(m) }
func Main(m *testing.M, flags ...string) { os.Exit(Built.BuildAndRun(m, flags...)) }

// BuildAndRun builds the gateway with go build and flags (for example
// "-race") into a new temporary directory, runs the tests of m, removes
// the directory, and returns the exit code to pass to os.Exit. If the
// build fails or takes more than 5 minutes, BuildAndRun prints why to
// standard error and returns 1 without running the tests.
func (b *Binary) BuildAndRun(m *testing.M, flags ...string) int {
	dir, err := os.MkdirTemp("", "gateway-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	b.Path = filepath.Join(dir, "gateway")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := append(append([]string{"build", "-o", b.Path}, flags...), mainPackage)
	if out, err := exec.CommandContext(ctx, "go", args...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the gateway: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// Gateway is a gateway process started by Binary.Start.
type Gateway struct {
	*Process
	// API and Admin are the base URLs of the API and admin listeners,
	// such as "http://127.0.0.1:41234".
	API, Admin string
}

// Start runs the gateway with args and env, composed as for the
// package's Start, listening by default on two 127.0.0.1 ports that were
// free a moment before (FreeAddr; the gateway refuses port 0). It waits,
// for at most 30s, until the gateway's /readyz answers 200; it fails the
// test, showing the gateway's output, if the gateway exits or is not ready
// by then. Should another program take one of those ports first, the
// gateway exits at once saying so, and Start tries again with new ports,
// three times at most. env may set GATEWAY_LISTEN_ADDR and
// GATEWAY_ADMIN_ADDR itself.
func (b *Binary) Start(t testing.TB, env []string, args ...string) *Gateway {
	t.Helper()
	var g *Gateway
	StartListening(t, func() (*Process, string) {
		g = b.Run(t, env, args...)
		return g.Process, g.Admin + "/readyz"
	})
	return g
}

// Run runs the gateway with args and env as Start does, on two free
// ports unless env sets the addresses, without waiting for it to be ready:
// for a gateway expected to exit, or watched by the test from its start.
func (b *Binary) Run(t testing.TB, env []string, args ...string) *Gateway {
	t.Helper()
	addrs := FreeAddrs(t, 2)
	full := append([]string{"GATEWAY_LISTEN_ADDR=" + addrs[0], "GATEWAY_ADMIN_ADDR=" + addrs[1]}, env...)
	return &Gateway{
		Process: Start(t, full, b.Path, args...),
		API:     "http://" + lastValue(full, "GATEWAY_LISTEN_ADDR"),
		Admin:   "http://" + lastValue(full, "GATEWAY_ADMIN_ADDR"),
	}
}

// lastValue returns the value of the last key=value entry of env for key.
func lastValue(env []string, key string) string {
	var v string
	for _, kv := range env {
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			v = val
		}
	}
	return v
}
