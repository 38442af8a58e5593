package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
)

// TestMain builds the gateway with the race detector for the process tests.
func TestMain(m *testing.M) { gatewaytest.Main(m, "-race") }

func get(t *testing.T, url string) (int, string, http.Header) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

const e2eKey = "e2e-key-0d1e2f3a4b5c6d7e8f90"

// TestProcessConfiguredByEnvironment starts the gateway configured only
// by environment variables in front of a fake BlueTape, and calls it.
func TestProcessConfiguredByEnvironment(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-BlueTape-Key") != e2eKey || r.Header.Get("X-Integration-AccountId") != "acct-e2e" {
			w.WriteHeader(401)
			return
		}
		if r.URL.Path == "/base/integration/customer/known/signup" {
			io.WriteString(w, `{"signUpUrl": "https://www.bluetape.com/signup?id=97bee7a043b58084"}`)
			return
		}
		w.WriteHeader(404)
		io.WriteString(w, `{"code": "404", "reason": "Customer not found."}`)
	}))
	t.Cleanup(upstream.Close)
	p := gatewaytest.Built.Start(t, []string{
		"BLUETAPE_BASE_URL=" + upstream.URL + "/base",
		"BLUETAPE_API_KEY=" + e2eKey,
		"BLUETAPE_ACCOUNT_ID=acct-e2e",
	})
	if code, body, h := get(t, p.API+"/customers/known/signup"); code != 200 ||
		body != `{"signUpUrl":"https://www.bluetape.com/signup?id=97bee7a043b58084"}` || h.Get("X-Cache") != "MISS" {
		t.Errorf("known id: %d %s %v", code, body, h)
	}
	if code, _, h := get(t, p.API+"/customers/known/signup"); code != 200 || h.Get("X-Cache") != "HIT" {
		t.Errorf("known id again: %d %v", code, h)
	}
	if code, body, _ := get(t, p.API+"/customers/other/signup"); code != 404 || body != `{"code":"404","reason":"Customer not found."}` {
		t.Errorf("unknown id: %d %s", code, body)
	}
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 200} {
		if code, _, _ := get(t, p.Admin+path); code != want {
			t.Errorf("admin %s: %d; want %d", path, code, want)
		}
	}
	if code, _, _ := get(t, p.API+"/metrics"); code != 404 {
		t.Errorf("/metrics on the API listener: %d; want 404", code)
	}
	if strings.Contains(p.Output(), e2eKey) {
		t.Errorf("the key appears in the gateway's output:\n%s", p.Output())
	}
}

// TestSandboxMode is the README's first command, as a newcomer runs it.
func TestSandboxMode(t *testing.T) {
	p := gatewaytest.Built.Start(t, nil, "-sandbox")
	if code, body, _ := get(t, p.API+"/customers/dc506b22c7fa/signup"); code != 200 || !strings.Contains(body, `"signUpUrl":"https://www.bluetape.com/signup?id=`) {
		t.Errorf("sandbox: %d %s", code, body)
	}
	if code, _, _ := get(t, p.API+"/customers/unknown-customer/signup"); code != 404 {
		t.Errorf("sandbox unknown-customer: %d; want 404", code)
	}
	if !strings.Contains(p.Output(), "SANDBOX MODE") {
		t.Errorf("sandbox mode does not say so at start:\n%s", p.Output())
	}
}

// TestBadConfigurationExits checks that a bad setting stops the process
// at once, non-zero, with one line that names the setting and no secret.
func TestBadConfigurationExits(t *testing.T) {
	cases := map[string]struct {
		env  []string
		want string
	}{
		"missing key":    {[]string{"BLUETAPE_ACCOUNT_ID=a"}, "BLUETAPE_API_KEY: is required"},
		"bad duration":   {[]string{"BLUETAPE_API_KEY=" + e2eKey, "BLUETAPE_ACCOUNT_ID=a", "GATEWAY_CACHE_TTL=15"}, "GATEWAY_CACHE_TTL: invalid duration"},
		"bad URL":        {[]string{"BLUETAPE_API_KEY=" + e2eKey, "BLUETAPE_ACCOUNT_ID=a", "BLUETAPE_BASE_URL=api.bluetape.com"}, "BLUETAPE_BASE_URL: scheme must be http or https"},
		"missing secret": {[]string{"BLUETAPE_API_KEY_FILE=/nonexistent/key", "BLUETAPE_ACCOUNT_ID=a"}, "BLUETAPE_API_KEY_FILE: reading secret file"},
		"bad callers":    {[]string{"BLUETAPE_API_KEY=" + e2eKey, "BLUETAPE_ACCOUNT_ID=a", "GATEWAY_CALLERS_FILE=main.go"}, "GATEWAY_CALLERS_FILE: parsing callers file"},
		"bad sampler":    {[]string{"BLUETAPE_API_KEY=" + e2eKey, "BLUETAPE_ACCOUNT_ID=a", "OTEL_TRACES_SAMPLER=sometimes"}, "tracing: OTEL_TRACES_SAMPLER: unsupported sampler"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			p := gatewaytest.Built.Run(t, tc.env)
			err := p.Wait(t, 30*time.Second)
			var exit *exec.ExitError
			if err == nil || !errAs(err, &exit) || exit.ExitCode() == 0 {
				t.Fatalf("exit: %v; want a non-zero exit", err)
			}
			lines := strings.Split(strings.TrimSpace(p.Stderr.String()), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
				t.Errorf("stderr %q; want one line containing %q", p.Stderr.String(), tc.want)
			}
			if strings.Contains(p.Output(), e2eKey) {
				t.Error("the key appears in the output")
			}
		})
	}
}

func errAs(err error, target **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	*target = e
	return ok
}

func TestVersionFlag(t *testing.T) {
	out, err := exec.Command(gatewaytest.Built.Path, "-version").Output()
	if err != nil || !strings.HasPrefix(string(out), "bluetape-gateway ") {
		t.Fatalf("-version: %q, %v", out, err)
	}
}

// TestSIGTERMExitsZero checks the plain lifecycle: ready, then a SIGTERM
// turns readiness off and the process exits 0.
func TestSIGTERMExitsZero(t *testing.T) {
	p := gatewaytest.Built.Start(t, []string{"GATEWAY_DRAIN_DELAY=0s"}, "-sandbox")
	if code, _, _ := get(t, p.Admin+"/readyz"); code != 200 {
		t.Fatalf("readyz %d before SIGTERM", code)
	}
	p.Signal(t, syscall.SIGTERM)
	if err := p.Wait(t, 30*time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, p.Output())
	}
}

// sandboxLine returns the sandbox's start line from the gateway's
// output, or nil before it is written.
func sandboxLine(p *gatewaytest.Process) map[string]any {
	for _, text := range strings.Split(p.Stdout.String(), "\n") {
		var line map[string]any
		if json.Unmarshal([]byte(text), &line) != nil {
			continue
		}
		if msg, _ := line["msg"].(string); strings.HasPrefix(msg, "SANDBOX MODE") {
			return line
		}
	}
	return nil
}

// checkLoopbackOnly checks that addr, where the gateway listens, is a
// 127.0.0.1 address. (Only loopback is dialled here: the tests send no
// traffic to any other address of the machine.)
func checkLoopbackOnly(t *testing.T, what, addr string) {
	t.Helper()
	if host, _, err := net.SplitHostPort(addr); err != nil || host != "127.0.0.1" {
		t.Errorf("%s listens on %q; want 127.0.0.1", what, addr)
	}
}

// TestSandboxListensOnLoopback starts the sandbox with no listen address
// set: the API listener is 127.0.0.1:8080 and the admin listener, with
// 9090 taken (as by a Prometheus), a free 127.0.0.1 port that the start
// line names and that answers /healthz.
func TestSandboxListensOnLoopback(t *testing.T) {
	if ln, err := net.Listen("tcp", "127.0.0.1:9090"); err == nil {
		t.Cleanup(func() { ln.Close() })
	} else {
		t.Logf("127.0.0.1:9090 is already taken: %v", err)
	}
	// Empty values leave the addresses unset.
	p := gatewaytest.Start(t, []string{"GATEWAY_LISTEN_ADDR=", "GATEWAY_ADMIN_ADDR="}, gatewaytest.Built.Path, "-sandbox")
	var listening map[string]any
	gatewaytest.WaitFor(t, 30*time.Second, "the sandbox to listen or exit", func() bool {
		if lines := p.Stdout.Records("gateway listening"); len(lines) > 0 {
			listening = lines[0]
			return true
		}
		return p.Exited()
	})
	if listening == nil {
		// Another program holds 127.0.0.1:8080 (or every address's
		// 8080): the sandbox must have tried 127.0.0.1:8080.
		if !strings.Contains(p.Stderr.String(), "listening on the API address 127.0.0.1:8080") {
			t.Fatalf("the sandbox exited without trying 127.0.0.1:8080 (%v):\n%s", p.Err(), p.Output())
		}
		t.Logf("8080 is taken on this machine; checked that the sandbox tried 127.0.0.1:8080:\n%s", p.Stderr)
		return
	}
	api, _ := listening["api"].(string)
	admin, _ := listening["admin"].(string)
	if api != "127.0.0.1:8080" {
		t.Errorf("API listener %q; want 127.0.0.1:8080", api)
	}
	checkLoopbackOnly(t, "the API listener", api)
	checkLoopbackOnly(t, "the admin listener", admin)
	if strings.HasSuffix(admin, ":9090") {
		t.Errorf("admin listener %q while 9090 is taken", admin)
	}
	line := sandboxLine(p)
	if line == nil || line["admin"] != admin || line["api"] != api || line["admin_moved"] == nil {
		t.Errorf("the sandbox start line %v does not say the admin listener moved to %s", line, admin)
	}
	if code, _, _ := get(t, "http://"+admin+"/healthz"); code != 200 {
		t.Errorf("/healthz on %s: %d", admin, code)
	}
	if code, _, _ := get(t, "http://"+api+"/customers/loopback-1/signup"); code != 200 {
		t.Errorf("API on %s: %d", api, code)
	}
	p.Stop(t)
}

// TestSandboxAnswersThroughTheDrain checks that the sandbox upstream
// outlives the signal: during the drain delay a new id still gets its
// URL, and the process then exits 0.
func TestSandboxAnswersThroughTheDrain(t *testing.T) {
	p := gatewaytest.Built.Start(t, []string{"GATEWAY_DRAIN_DELAY=5s"}, "-sandbox")
	if code, _, _ := get(t, p.API+"/customers/before-signal/signup"); code != 200 {
		t.Fatalf("before the signal: %d", code)
	}
	p.Signal(t, syscall.SIGTERM)
	gatewaytest.WaitFor(t, 5*time.Second, "/readyz to answer 503", func() bool {
		code, _, _ := get(t, p.Admin+"/readyz")
		return code == http.StatusServiceUnavailable
	})
	code, body, h := get(t, p.API+"/customers/new-during-drain/signup")
	if code != 200 || h.Get("X-Cache") != "MISS" || !strings.Contains(body, `"signUpUrl":"https://www.bluetape.com/signup?id=`) {
		t.Errorf("new id during the drain: %d %s %v; want 200 from the sandbox", code, body, h)
	}
	if err := p.Wait(t, 30*time.Second); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
}
