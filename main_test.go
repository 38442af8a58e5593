package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binary is the gateway built once for the process tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gateway-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "gateway")
	build := exec.Command("go", "build", "-race", "-o", binary, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		panic("building the gateway: " + err.Error())
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// process is a gateway started as a process; its stdout log is scanned
// for the addresses it listens on.
type process struct {
	cmd       *exec.Cmd
	api       string
	admin     string
	mu        sync.Mutex
	out       bytes.Buffer
	stderr    bytes.Buffer
	exited    chan struct{}
	exitError error
}

func (p *process) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String() + p.stderr.String()
}

// startGateway runs the binary with exactly env as its environment and
// waits (bounded) until it says where it listens.
func startGateway(t *testing.T, env []string, args ...string) *process {
	t.Helper()
	p := &process{exited: make(chan struct{})}
	p.cmd = exec.Command(binary, args...)
	p.cmd.Env = append([]string{"GATEWAY_LISTEN_ADDR=127.0.0.1:0", "GATEWAY_ADMIN_ADDR=127.0.0.1:0"}, env...)
	p.cmd.Stderr = &lockedWriter{mu: &p.mu, w: &p.stderr}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	listening := make(chan [2]string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Bytes()
			p.mu.Lock()
			p.out.Write(line)
			p.out.WriteByte('\n')
			p.mu.Unlock()
			var v struct{ Msg, API, Admin string }
			if json.Unmarshal(line, &v) == nil && v.Msg == "gateway listening" {
				listening <- [2]string{v.API, v.Admin}
			}
		}
		p.exitError = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
	})
	select {
	case a := <-listening:
		p.api, p.admin = "http://"+a[0], "http://"+a[1]
	case <-p.exited:
		t.Fatalf("gateway exited before listening: %v\n%s", p.exitError, p.output())
	case <-time.After(30 * time.Second):
		t.Fatalf("gateway did not start in 30s:\n%s", p.output())
	}
	return p
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

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
	p := startGateway(t, []string{
		"BLUETAPE_BASE_URL=" + upstream.URL + "/base",
		"BLUETAPE_API_KEY=" + e2eKey,
		"BLUETAPE_ACCOUNT_ID=acct-e2e",
	})
	if code, body, h := get(t, p.api+"/customers/known/signup"); code != 200 ||
		body != `{"signUpUrl":"https://www.bluetape.com/signup?id=97bee7a043b58084"}` || h.Get("X-Cache") != "MISS" {
		t.Errorf("known id: %d %s %v", code, body, h)
	}
	if code, _, h := get(t, p.api+"/customers/known/signup"); code != 200 || h.Get("X-Cache") != "HIT" {
		t.Errorf("known id again: %d %v", code, h)
	}
	if code, body, _ := get(t, p.api+"/customers/other/signup"); code != 404 || body != `{"code":"404","reason":"Customer not found."}` {
		t.Errorf("unknown id: %d %s", code, body)
	}
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 200} {
		if code, _, _ := get(t, p.admin+path); code != want {
			t.Errorf("admin %s: %d; want %d", path, code, want)
		}
	}
	if code, _, _ := get(t, p.api+"/metrics"); code != 404 {
		t.Errorf("/metrics on the API listener: %d; want 404", code)
	}
	if strings.Contains(p.output(), e2eKey) {
		t.Errorf("the key appears in the gateway's output:\n%s", p.output())
	}
}

// TestSandboxMode is the README's first command, as a newcomer runs it.
func TestSandboxMode(t *testing.T) {
	p := startGateway(t, nil, "-sandbox")
	if code, body, _ := get(t, p.api+"/customers/dc506b22c7fa/signup"); code != 200 || !strings.Contains(body, `"signUpUrl":"https://www.bluetape.com/signup?id=`) {
		t.Errorf("sandbox: %d %s", code, body)
	}
	if code, _, _ := get(t, p.api+"/customers/unknown-customer/signup"); code != 404 {
		t.Errorf("sandbox unknown-customer: %d; want 404", code)
	}
	if !strings.Contains(p.output(), "SANDBOX MODE") {
		t.Errorf("sandbox mode does not say so at start:\n%s", p.output())
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
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, binary)
			cmd.Env = append([]string{"GATEWAY_LISTEN_ADDR=127.0.0.1:0", "GATEWAY_ADMIN_ADDR=127.0.0.1:0"}, tc.env...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if ctx.Err() != nil {
				t.Fatal("the gateway did not exit")
			}
			var exit *exec.ExitError
			if err == nil || !errAs(err, &exit) || exit.ExitCode() == 0 {
				t.Fatalf("exit: %v; want a non-zero exit", err)
			}
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
				t.Errorf("stderr %q; want one line containing %q", stderr.String(), tc.want)
			}
			if strings.Contains(stdout.String()+stderr.String(), e2eKey) {
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
	out, err := exec.Command(binary, "-version").Output()
	if err != nil || !strings.HasPrefix(string(out), "bluetape-gateway ") {
		t.Fatalf("-version: %q, %v", out, err)
	}
}

// TestSIGTERMExitsZero checks the plain lifecycle: ready, then a SIGTERM
// turns readiness off and the process exits 0.
func TestSIGTERMExitsZero(t *testing.T) {
	p := startGateway(t, []string{"GATEWAY_DRAIN_DELAY=0s"}, "-sandbox")
	if code, _, _ := get(t, p.admin+"/readyz"); code != 200 {
		t.Fatalf("readyz %d before SIGTERM", code)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("no exit within 30s of SIGTERM")
	}
	if p.exitError != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", p.exitError, p.output())
	}
}
