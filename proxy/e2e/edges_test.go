package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
)

// adminDo sends method path to the admin listener with token as a bearer
// token when it is not empty, and returns the status.
func adminDo(t *testing.T, g *gatewaytest.Gateway, method, path, token string) int {
	t.Helper()
	resp, _ := gatewaytest.Do(t, client, method, g.Admin+path, gatewaytest.Bearer(token)...)
	return resp.StatusCode
}

// The admin token is read from its file, required by the admin actions,
// re-read when the file is swapped, and kept when the new content is
// refused. Without the file, the admin actions are not served.
func TestAdminTokenFile(t *testing.T) {
	const token1, token2 = "e2e-admin-token-one-5a4b3c2d", "e2e-admin-token-two-9e8f7a6b"
	up := newBluetape(t)
	vol := gatewaytest.NewSecretVolume(t, map[string]string{"admin-token": token1 + "\n"})
	g := gatewaytest.Built.Start(t, up.env("GATEWAY_ADMIN_TOKEN_FILE="+vol.Path("admin-token")))
	if status, body := get(g.API + "/customers/c1/signup"); status != 200 {
		t.Fatalf("status %d (%s); want 200", status, body)
	}
	if s := adminDo(t, g, http.MethodDelete, "/cache/customers/c1", ""); s != http.StatusUnauthorized {
		t.Errorf("DELETE without the token: %d; want 401", s)
	}
	if s := adminDo(t, g, http.MethodGet, "/debug/pprof/", token2); s != http.StatusUnauthorized {
		t.Errorf("pprof with another token: %d; want 401", s)
	}
	if s := adminDo(t, g, http.MethodDelete, "/cache/customers/c1", token1); s != http.StatusNoContent {
		t.Errorf("DELETE with the token: %d; want 204", s)
	}
	for _, path := range []string{"/metrics", "/healthz", "/readyz", "/openapi.yaml"} {
		if s := adminDo(t, g, http.MethodGet, path, ""); s != http.StatusOK {
			t.Errorf("GET %s without a token: %d; want 200", path, s)
		}
	}

	vol.Update(map[string]string{"admin-token": token2 + "\n"})
	gatewaytest.WaitFor(t, 10*time.Second, "the new token in force", func() bool {
		return adminDo(t, g, http.MethodGet, "/debug/pprof/", token2) == http.StatusOK
	})
	if s := adminDo(t, g, http.MethodGet, "/debug/pprof/", token1); s != http.StatusUnauthorized {
		t.Errorf("pprof with the rotated-out token: %d; want 401", s)
	}

	vol.Update(map[string]string{"admin-token": "two words\n"})
	const metric = `bluetape_gateway_secret_reload_errors_total{secret="admin_token"} 1`
	var metrics string
	gatewaytest.WaitFor(t, 10*time.Second, "the failed reload in the metrics", func() bool {
		_, metrics = get(g.Admin + "/metrics")
		return strings.Contains(metrics, metric)
	})
	if s := adminDo(t, g, http.MethodGet, "/debug/pprof/", token2); s != http.StatusOK {
		t.Errorf("pprof with the last good token after a refused rotation: %d; want 200", s)
	}
	lines := g.Stdout.Records("reloading a secret file failed; keeping the last good value")
	if len(lines) != 1 || lines[0]["setting"] != "GATEWAY_ADMIN_TOKEN_FILE" {
		t.Errorf("log lines for the failed reload %v; want one naming GATEWAY_ADMIN_TOKEN_FILE", lines)
	}
	wantNotShown(t, g, metrics, token1, token2, "two words")
	g.Stop(t)
}

// Without GATEWAY_ADMIN_TOKEN_FILE the admin actions are not served.
func TestNoAdminTokenNoAdminActions(t *testing.T) {
	up := newBluetape(t)
	g := gatewaytest.Built.Start(t, up.env())
	if s := adminDo(t, g, http.MethodDelete, "/cache/customers/c1", "anything"); s != http.StatusNotFound {
		t.Errorf("DELETE: %d; want 404", s)
	}
	if s := adminDo(t, g, http.MethodGet, "/debug/pprof/", "anything"); s != http.StatusNotFound {
		t.Errorf("pprof: %d; want 404", s)
	}
	g.Stop(t)
}
