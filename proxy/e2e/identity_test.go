package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
	"github.com/bluetape/bluetape-gateway/proxy/identity/identitytest"
)

// getAuth sends GET url with the bearer token tok ("" for none) and
// returns the status and the WWW-Authenticate header; a transport error
// fails the test.
func getAuth(t *testing.T, url, tok string) (int, string) {
	t.Helper()
	resp, _ := gatewaytest.Do(t, client, http.MethodGet, url, gatewaytest.Bearer(tok)...)
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
}

// Service-account tokens of a real issuer (over TLS with its own CA, and
// asking for the gateway's own token, as the Kubernetes API server does)
// authenticate callers beside static tokens. While the issuer is down at
// start the process runs and is not ready; once it is up, the gateway
// becomes ready, and a key the issuer publishes later is accepted.
func TestServiceAccountTokens(t *testing.T) {
	const ownToken = "gateway-own-service-account-token"
	const staticToken = "e2e-static-token-7c1d"
	is := identitytest.NewTLSIssuer(t, identitytest.RSA())
	is.SetDown(true)
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	write(t, ca, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: is.Server.Certificate().Raw})))
	tokenFile := filepath.Join(dir, "token")
	write(t, tokenFile, ownToken)
	callersFile := filepath.Join(dir, "callers.yaml")
	write(t, callersFile, `callers:
  - name: billing-api
    subject: system:serviceaccount:billing:billing-api
  - name: static-caller
    token_sha256: `+sha256Hex(staticToken)+`
`)
	up := newBluetape(t)
	addrs := gatewaytest.FreeAddrs(t, 2)
	api, admin := addrs[0], addrs[1]
	g := gatewaytest.Start(t, []string{
		"BLUETAPE_BASE_URL=" + up.base(), "BLUETAPE_API_KEY=e2e-key", "BLUETAPE_ACCOUNT_ID=e2e-account",
		"GATEWAY_LISTEN_ADDR=" + api, "GATEWAY_ADMIN_ADDR=" + admin,
		"GATEWAY_CALLERS_FILE=" + callersFile,
		"GATEWAY_JWT_ISSUER=" + is.URL,
		"GATEWAY_JWT_CA_FILE=" + ca,
		"GATEWAY_JWT_AUTH_TOKEN_FILE=" + tokenFile,
	}, gatewaytest.Built.Path)
	apiURL, adminURL := "http://"+api, "http://"+admin

	gatewaytest.WaitFor(t, 30*time.Second, "the admin listener to answer", func() bool {
		if g.Exited() {
			t.Fatalf("the gateway exited while its issuer was down: %v", g.Err())
		}
		status, _ := get(adminURL + "/readyz")
		return status != 0
	})
	gatewaytest.WaitFor(t, 30*time.Second, "a failed key set fetch", func() bool {
		_, m := get(adminURL + "/metrics")
		return fetchErrors.MatchString(m)
	})
	if status, _ := get(adminURL + "/readyz"); status != http.StatusServiceUnavailable {
		t.Fatalf("readyz %d while the issuer is down; want 503", status)
	}
	is.SetDown(false)
	gatewaytest.WaitFor(t, 30*time.Second, "readyz 200 once the issuer is up", func() bool {
		status, _ := get(adminURL + "/readyz")
		return status == http.StatusOK
	})
	for _, h := range is.AuthHeaders() {
		if h != "Bearer "+ownToken {
			t.Errorf("a fetch carried Authorization %q; want the gateway's own token", h)
		}
	}

	now := time.Now()
	listed := is.Token(t, identitytest.RSA(), "billing", "billing-api", now)
	unlisted := is.Token(t, identitytest.RSA(), "elsewhere", "intruder", now)
	expired := identitytest.Sign(t, identitytest.RSA(),
		identitytest.ServiceAccountClaims(is.URL, "billing", "billing-api", now.Add(-3*time.Hour)))
	url := apiURL + "/customers/sa-1/signup"
	for _, tc := range []struct {
		name, tok string
		status    int
		challenge string
	}{
		{"no token", "", 401, "Bearer"},
		{"listed service account", listed, 200, ""},
		{"static token", staticToken, 200, ""},
		{"unlisted service account", unlisted, 403, ""},
		{"expired", expired, 401, `Bearer error="invalid_token"`},
	} {
		if status, challenge := getAuth(t, url, tc.tok); status != tc.status || challenge != tc.challenge {
			t.Errorf("%s: %d %q; want %d %q", tc.name, status, challenge, tc.status, tc.challenge)
		}
	}
	gatewaytest.WaitFor(t, 10*time.Second, "the service account's name in the access log", func() bool {
		for _, l := range g.Stdout.Records("request") {
			if l["caller"] == "billing-api" && l["status"] == float64(200) {
				return true
			}
		}
		return false
	})
	if len(g.Stdout.Records("accepting tokens of an issuer")) != 1 {
		t.Errorf("no start line naming the issuer")
	}

	// The issuer rotates its key: a token signed with the new one is
	// accepted after the gateway fetches the key set again.
	is.Publish(identitytest.RSA(), identitytest.RSA2())
	rotated := is.Token(t, identitytest.RSA2(), "billing", "billing-api", now)
	gatewaytest.WaitFor(t, 15*time.Second, "a token of the new key to be accepted", func() bool {
		status, _ := getAuth(t, url, rotated)
		return status == http.StatusOK
	})

	for _, secret := range []string{ownToken, staticToken, listed, unlisted, rotated} {
		if strings.Contains(g.Output(), secret) {
			t.Errorf("a token appears in the gateway's output")
		}
	}
}

// Without a callers file, every valid token is accepted at the default
// rate with a bucket per subject, and counted as unregistered.
func TestServiceAccountTokensWithoutCallersFile(t *testing.T) {
	is := identitytest.NewIssuer(t, identitytest.EC())
	up := newBluetape(t)
	g := gatewaytest.Built.Start(t, up.env(
		"GATEWAY_JWT_ISSUER="+is.URL,
		"GATEWAY_RATE_LIMIT=0.001", "GATEWAY_RATE_BURST=1",
	))
	now := time.Now()
	first := is.Token(t, identitytest.EC(), "billing", "billing-api", now)
	second := is.Token(t, identitytest.EC(), "orders", "orders-api", now)
	url := g.API + "/customers/sa-2/signup"
	for _, tc := range []struct {
		name, tok string
		status    int
	}{
		{"no token", "", 401},
		{"a static token", "not-a-jwt", 401},
		{"first subject", first, 200},
		{"first subject, bucket empty", first, 429},
		{"second subject", second, 200},
	} {
		if status, _ := getAuth(t, url, tc.tok); status != tc.status {
			t.Errorf("%s: %d; want %d", tc.name, status, tc.status)
		}
	}
	if _, m := get(g.Admin + "/metrics"); !strings.Contains(m, `bluetape_gateway_rate_limited_total{caller="unregistered"} 1`) {
		t.Errorf("rate_limited_total has no unregistered series of 1")
	}
}

// fetchErrors matches a count of failed key set fetches above zero.
var fetchErrors = regexp.MustCompile(`(?m)^bluetape_gateway_jwks_fetch_errors_total [1-9]`)

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
