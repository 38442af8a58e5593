package openapi_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
	"github.com/bluetape/bluetape-gateway/proxy/openapi"
)

// oapiCodegen is the generator docs/api.md tells calling teams to run.
const oapiCodegen = "github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen@v2.8.2"

// clientProgram uses the generated client against the gateway whose API
// base URL is its first argument, and prints what it got.
const clientProgram = `package main

import (
	"context"
	"fmt"
	"net/http"
	"os"

	"example.com/caller/client"
)

func main() {
	c, err := client.NewClientWithResponses(os.Args[1], client.WithRequestEditorFn(
		func(_ context.Context, r *http.Request) error {
			r.Header.Set("X-Request-Id", "generated-client-1")
			return nil
		}))
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	found, err := c.GetSignupURLWithResponse(ctx, "found-client", nil)
	if err != nil {
		panic(err)
	}
	fmt.Println("found", found.StatusCode(), found.JSON200.SignUpUrl, found.HTTPResponse.Header.Get("X-Request-Id"))
	missing, err := c.GetSignupURLWithResponse(ctx, "missing", nil)
	if err != nil {
		panic(err)
	}
	fmt.Println("missing", missing.StatusCode(), missing.JSON404.Code, missing.JSON404.Reason)
}
`

// TestGeneratedClient generates a Go client from the document with
// oapi-codegen, as docs/api.md shows, in a module of its own in a
// temporary directory, builds it, and uses it against a running gateway.
func TestGeneratedClient(t *testing.T) {
	dir := t.TempDir()
	gatewaytest.WriteFiles(t, dir, map[string]string{
		"go.mod":       "module example.com/caller\n\ngo 1.26\n",
		"openapi.yaml": string(openapi.Document()),
		"main.go":      clientProgram,
	})

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("run", oapiCodegen, "-generate", "types,client", "-package", "client", "-o", "client/client.gen.go", "openapi.yaml")
	run("mod", "tidy")

	gws := startGateways(t)
	out := run("run", ".", gws["open"].API)
	for _, want := range []string{
		"found 200 https://www.bluetape.com/signup?id=found-client generated-client-1\n",
		"missing 404 404 Customer not found.\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the generated client printed:\n%s\nwant a line %q", out, want)
		}
	}
}
