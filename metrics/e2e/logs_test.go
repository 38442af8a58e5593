package e2e

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
)

// Credentials for the process tests: long and distinctive, so that any
// piece of them found in the output is a leak.
const (
	secretKey     = "e2e-key-6b2f9d0c4e8a1357bd9e2c4f6a8b0d1e"
	secretAccount = "e2e-account-93a1c7e5d2f4"
)

// noSecret fails if text holds either credential, or its last 16
// characters.
func noSecret(t *testing.T, where, text string) {
	t.Helper()
	gatewaytest.NoSecret(t, where, text, secretKey, secretAccount)
}

// TestBadConfigNeverPrintsSecrets starts the gateway with the credentials
// set and one bad setting, and checks that it exits non-zero with one line
// naming the setting, and that neither output holds a credential.
func TestBadConfigNeverPrintsSecrets(t *testing.T) {
	withSecrets := []string{"BLUETAPE_API_KEY=" + secretKey, "BLUETAPE_ACCOUNT_ID=" + secretAccount}
	cases := map[string]struct {
		env     []string
		setting string
	}{
		"bad duration":  {append(withSecrets, "GATEWAY_CACHE_TTL=15"), "GATEWAY_CACHE_TTL"},
		"bad log level": {append(withSecrets, "GATEWAY_LOG_LEVEL=loud"), "GATEWAY_LOG_LEVEL"},
		"key in base URL": {append(withSecrets, "BLUETAPE_BASE_URL=https://user:"+secretKey+"@api.example.com/x"),
			"BLUETAPE_BASE_URL"},
		"unparsable base URL": {append(withSecrets, "BLUETAPE_BASE_URL=https://[::1"+secretKey+"/x"), "BLUETAPE_BASE_URL"},
		"key set twice": {append(withSecrets, "BLUETAPE_API_KEY_FILE="+gatewaytest.TempFile(t, "key", secretKey+"\n")),
			"BLUETAPE_API_KEY"},
		"secret file of two lines": {[]string{"BLUETAPE_API_KEY_FILE=" + gatewaytest.TempFile(t, "two-lines", secretKey+"\n"+secretKey+"\n"),
			"BLUETAPE_ACCOUNT_ID=" + secretAccount}, "BLUETAPE_API_KEY_FILE"},
		"key in redis URL":     {append(withSecrets, "GATEWAY_REDIS_URL=ftp://:"+secretKey+"@redis:6379"), "GATEWAY_REDIS_URL"},
		"unparsable redis URL": {append(withSecrets, "GATEWAY_REDIS_URL=redis://:"+secretKey+"@[bad"), "GATEWAY_REDIS_URL"},
		"config file with secrets and a bad setting": {[]string{"GATEWAY_CONFIG=" + gatewaytest.TempFile(t, "config.yaml",
			"BLUETAPE_API_KEY: "+secretKey+"\nBLUETAPE_ACCOUNT_ID: "+secretAccount+"\nGATEWAY_UPSTREAM_TIMEOUT: soon\n")},
			"GATEWAY_UPSTREAM_TIMEOUT"},
		"bad setting at debug level": {append(withSecrets, "GATEWAY_LOG_LEVEL=debug", "GATEWAY_RATE_LIMIT=fast"),
			"GATEWAY_RATE_LIMIT"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			p := gatewaytest.Built.Run(t, tc.env)
			err := p.Wait(t, 10*time.Second)
			if _, ok := err.(*exec.ExitError); !ok {
				t.Fatalf("exit %v; want a non-zero exit\nstdout:\n%s\nstderr:\n%s", err, p.Stdout, p.Stderr)
			}
			stderr := strings.TrimSpace(p.Stderr.String())
			if !strings.Contains(stderr, tc.setting) {
				t.Errorf("stderr does not name %s:\n%s", tc.setting, stderr)
			}
			noSecret(t, "stderr", p.Stderr.String())
			noSecret(t, "stdout", p.Stdout.String())
		})
	}
}

// TestErrorPathsNeverLogSecrets runs the gateway at debug level against an
// upstream that rejects its key, fails, stalls and answers garbage, each
// time echoing the credentials it received, and checks that they appear
// nowhere in the gateway's output or in /metrics.
func TestErrorPathsNeverLogSecrets(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-BlueTape-Key") != secretKey || r.Header.Get("X-Integration-AccountId") != secretAccount {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		echo := `{"code": "x", "reason": "key ` + secretKey + ` account ` + secretAccount + `"}`
		w.Header().Set("Content-Type", "application/json")
		switch id := strings.Split(r.URL.Path, "/")[4]; id {
		case "rejected":
			w.WriteHeader(http.StatusUnauthorized)
		case "forbidden":
			w.WriteHeader(http.StatusForbidden)
		case "failing":
			w.WriteHeader(http.StatusInternalServerError)
		case "unavailable":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "stalled":
			<-r.Context().Done()
			return
		case "garbage":
			io.WriteString(w, secretKey+secretAccount)
			return
		case "redirect":
			w.Header().Set("Location", "https://elsewhere.example/"+secretKey)
			w.WriteHeader(http.StatusFound)
		case "missing":
			w.WriteHeader(http.StatusNotFound)
		default:
			io.WriteString(w, `{"signUpUrl": "https://www.bluetape.com/signup?id=`+id+`"}`)
			return
		}
		io.WriteString(w, echo)
	}))
	t.Cleanup(upstream.Close)

	gw := gatewaytest.Built.Start(t, []string{
		"BLUETAPE_BASE_URL=" + upstream.URL + "/genericBthubService",
		"BLUETAPE_API_KEY=" + secretKey, "BLUETAPE_ACCOUNT_ID=" + secretAccount,
		"GATEWAY_UPSTREAM_TIMEOUT=300ms", "GATEWAY_LOG_LEVEL=debug",
	})
	for _, id := range []string{"rejected", "forbidden", "failing", "unavailable", "stalled", "garbage", "redirect", "missing"} {
		if code, _ := request(t, gw, "GET", "/customers/"+id+"/signup"); code < 400 {
			t.Errorf("%s: status %d; want an error", id, code)
		}
		if code, _ := request(t, gw, "GET", "/customers/fine/signup"); code != 200 {
			t.Errorf("fine: status %d; want 200, the credentials in use", code)
		}
	}
	noSecret(t, "/metrics", scrape(t, gw, ""))
	noSecret(t, "/metrics (OpenMetrics)", scrape(t, gw, "application/openmetrics-text; version=1.0.0"))
	gw.Stop(t)

	var warnings int
	for _, line := range gatewaytest.JSONLines(t, gw.Stdout.String()) {
		if line["level"] == "WARN" && line["msg"] == "request" {
			warnings++
		}
	}
	if warnings == 0 {
		t.Errorf("no failed request was logged; the test did not reach the error paths:\n%s", gw.Stdout)
	}
	noSecret(t, "stdout", gw.Stdout.String())
	noSecret(t, "stderr", gw.Stderr.String())
}

// TestLogLevelWarn checks that GATEWAY_LOG_LEVEL=warn keeps info lines,
// access lines of answered requests included, out of the output, and
// that a failed request is still logged.
func TestLogLevelWarn(t *testing.T) {
	// At level warn the gateway does not log where it listens: give it
	// the addresses.
	addrs := gatewaytest.FreeAddrs(t, 2)
	gw := gatewaytest.Built.Start(t, []string{"GATEWAY_LOG_LEVEL=warn",
		"GATEWAY_LISTEN_ADDR=" + addrs[0], "GATEWAY_ADMIN_ADDR=" + addrs[1]}, "-sandbox")
	send(t, gw, []sent{
		{method: "GET", path: "/customers/alice/signup", code: 200},
		{method: "GET", path: "/customers/alice/signup", code: 200},
		{method: "GET", path: "/customers/unknown-customer/signup", code: 404},
		{method: "GET", path: "/nowhere", code: 404},
		{method: "GET", path: "/customers/upstream-error/signup", code: 502},
	})
	gw.Stop(t)
	var access []map[string]any
	for _, line := range gatewaytest.JSONLines(t, gw.Stdout.String()) {
		if line["level"] == "INFO" || line["level"] == "DEBUG" {
			t.Errorf("a %s line at level warn: %v", line["level"], line)
		}
		if line["msg"] == "request" {
			access = append(access, line)
		}
	}
	if len(access) != 1 || access[0]["status"] != 502.0 {
		t.Errorf("access lines %v; want only the 502's", access)
	}
}
