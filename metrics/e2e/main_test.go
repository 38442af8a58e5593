package e2e

import (
	"net/http"
	"testing"

	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
)

// TestMain builds the gateway once for every test, with the version "e2e".
func TestMain(m *testing.M) { gatewaytest.Main(m, "-ldflags", "-X main.version=e2e") }

// request sends method path to g's API with header pairs and
// returns the status and the X-Request-Id answered.
func request(t *testing.T, g *gatewaytest.Gateway, method, path string, header ...string) (int, string) {
	t.Helper()
	resp, _ := gatewaytest.Do(t, http.DefaultClient, method, g.API+path, header...)
	return resp.StatusCode, resp.Header.Get("X-Request-Id")
}

// scrape reads g's /metrics, asking for accept when not empty.
func scrape(t *testing.T, g *gatewaytest.Gateway, accept string) string {
	t.Helper()
	var header []string
	if accept != "" {
		header = []string{"Accept", accept}
	}
	resp, body := gatewaytest.Do(t, http.DefaultClient, http.MethodGet, g.Admin+"/metrics", header...)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d", resp.StatusCode)
	}
	return body
}

// sent is one request a test sent and the status it expects.
type sent struct {
	method, path string
	code         int
	header       []string
}

// send sends each request to g in order and checks its status.
func send(t *testing.T, g *gatewaytest.Gateway, reqs []sent) {
	t.Helper()
	for _, r := range reqs {
		if code, _ := request(t, g, r.method, r.path, r.header...); code != r.code {
			t.Fatalf("%s %s: status %d; want %d", r.method, r.path, code, r.code)
		}
	}
}
