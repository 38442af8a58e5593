package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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

// gatewayBin is the gateway binary, built once by TestMain.
var gatewayBin string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "gateway-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	gatewayBin = filepath.Join(dir, "gateway")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", gatewayBin, "github.com/bluetape/bluetape-gateway")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the gateway: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// syncBuffer collects a process's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// logLines returns the JSON log lines whose msg is msg.
func (s *syncBuffer) logLines(msg string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s.String()))
	for sc.Scan() {
		var v map[string]any
		if json.Unmarshal(sc.Bytes(), &v) == nil && v["msg"] == msg {
			out = append(out, v)
		}
	}
	return out
}

// gateway is a running gateway process.
type gateway struct {
	cmd         *exec.Cmd
	out         *syncBuffer
	api, admin  string // base URLs
	exited      chan struct{}
	exitErr     error
	exitedAfter time.Duration
}

// startGateway runs the binary with exactly env (plus listeners on
// loopback ports it picks) and waits until it listens. The process is
// killed, if still running, when the test ends.
func startGateway(t *testing.T, env map[string]string) *gateway {
	t.Helper()
	g := &gateway{out: &syncBuffer{}, exited: make(chan struct{})}
	g.cmd = exec.Command(gatewayBin)
	g.cmd.Env = []string{"GATEWAY_LISTEN_ADDR=127.0.0.1:0", "GATEWAY_ADMIN_ADDR=localhost:0"}
	for k, v := range env {
		g.cmd.Env = append(g.cmd.Env, k+"="+v)
	}
	g.cmd.Stdout, g.cmd.Stderr = g.out, g.out
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	go func() {
		g.exitErr = g.cmd.Wait()
		g.exitedAfter = time.Since(started)
		close(g.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-g.exited:
		default:
			g.cmd.Process.Kill()
			<-g.exited
		}
		if t.Failed() {
			t.Logf("gateway output:\n%s", g.out)
		}
	})
	waitFor(t, 15*time.Second, "the gateway to listen", func() bool {
		select {
		case <-g.exited:
			t.Fatalf("the gateway exited at start (%v):\n%s", g.exitErr, g.out)
		default:
		}
		lines := g.out.logLines("gateway listening")
		if len(lines) == 0 {
			return false
		}
		g.api, g.admin = "http://"+lines[0]["api"].(string), "http://"+lines[0]["admin"].(string)
		return true
	})
	return g
}

func (g *gateway) signal(t *testing.T, s os.Signal) {
	t.Helper()
	if err := g.cmd.Process.Signal(s); err != nil {
		t.Fatal(err)
	}
}

// wait waits up to limit for the process to exit.
func (g *gateway) wait(t *testing.T, limit time.Duration) error {
	t.Helper()
	select {
	case <-g.exited:
		return g.exitErr
	case <-time.After(limit):
		t.Fatalf("the gateway did not exit within %v", limit)
		return nil
	}
}

var client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// get requests url and returns the status and body; a transport error is
// status 0.
func get(url string) (int, string) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// waitFor polls cond every 20ms until it holds, failing the test after
// limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// bluetape is a fake BlueTape: it answers ids with a signup URL, holds ids
// starting with "held" until released, and records the keys it receives.
type bluetape struct {
	*httptest.Server
	mu          sync.Mutex
	keys        map[string]int
	held        chan string
	release     chan struct{}
	releaseOnce sync.Once
}

func newBluetape(t *testing.T) *bluetape {
	b := &bluetape{keys: map[string]int{}, held: make(chan string, 16), release: make(chan struct{})}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := strings.TrimSuffix(r.URL.Path[strings.LastIndex(strings.TrimSuffix(r.URL.Path, "/signup"), "/")+1:], "/signup")
		b.mu.Lock()
		for _, k := range r.Header.Values("X-Bluetape-Key") {
			b.keys[k]++
		}
		b.mu.Unlock()
		if strings.HasPrefix(id, "held") {
			b.held <- id
			select {
			case <-b.release:
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"signUpUrl": "https://www.bluetape.com/signup?id=%s"}`, id)
	}))
	t.Cleanup(func() {
		b.releaseAll()
		b.Close()
	})
	return b
}

func (b *bluetape) releaseAll() { b.releaseOnce.Do(func() { close(b.release) }) }

func (b *bluetape) seen(key string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.keys[key]
}

func (b *bluetape) base() string { return b.URL + "/genericBthubService" }

// secretVolume is a Secret volume laid out as the kubelet mounts it; see
// swap.
type secretVolume struct {
	t   *testing.T
	dir string
	gen int
}

func newSecretVolume(t *testing.T, files map[string]string) *secretVolume {
	v := &secretVolume{t: t, dir: t.TempDir()}
	v.swap(files)
	for name := range files {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(v.dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return v
}

// swap writes files into a new timestamped directory, points `..data` at
// it with a temporary link renamed over the old one, and removes the old
// directory: the kubelet's atomic update.
func (v *secretVolume) swap(files map[string]string) {
	v.gen++
	ts := fmt.Sprintf("..2026_01_01_00_00_%02d.%d", v.gen, v.gen)
	must(v.t, os.Mkdir(filepath.Join(v.dir, ts), 0o755))
	for name, content := range files {
		must(v.t, os.WriteFile(filepath.Join(v.dir, ts, name), []byte(content), 0o644))
	}
	old, _ := os.Readlink(filepath.Join(v.dir, "..data"))
	must(v.t, os.Symlink(ts, filepath.Join(v.dir, "..data_tmp")))
	must(v.t, os.Rename(filepath.Join(v.dir, "..data_tmp"), filepath.Join(v.dir, "..data")))
	if old != "" {
		must(v.t, os.RemoveAll(filepath.Join(v.dir, old)))
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// The secret files are re-read when the kubelet swaps them: the next
// upstream call carries the new key, with no restart. A swap to an empty
// file keeps the last good key, and says so in the log and the metrics.
func TestSecretFileRotation(t *testing.T) {
	const key1, key2, account = "e2e-key-one-0b1c2d3e", "e2e-key-two-4f5a6b7c", "e2e-account-99"
	up := newBluetape(t)
	vol := newSecretVolume(t, map[string]string{"api-key": key1 + "\n", "account-id": account + "\n"})
	g := startGateway(t, map[string]string{
		"BLUETAPE_BASE_URL":        up.base(),
		"BLUETAPE_API_KEY_FILE":    filepath.Join(vol.dir, "api-key"),
		"BLUETAPE_ACCOUNT_ID_FILE": filepath.Join(vol.dir, "account-id"),
	})
	n := 0
	request := func() {
		t.Helper()
		n++
		id := fmt.Sprintf("rot-%d", n)
		if status, body := get(g.api + "/customers/" + id + "/signup"); status != 200 || !strings.Contains(body, "id="+id+`"`) {
			t.Fatalf("%s: status %d (%s); want 200", id, status, body)
		}
	}
	request()
	if up.seen(key1) != 1 {
		t.Fatalf("upstream saw the first key %d times; want 1", up.seen(key1))
	}

	vol.swap(map[string]string{"api-key": key2 + "\n", "account-id": account + "\n"})
	waitFor(t, 10*time.Second, "the new key upstream", func() bool {
		request()
		return up.seen(key2) > 0
	})
	// Info lines are written in batches, at most 100ms late.
	waitFor(t, 10*time.Second, "the reload in the log", func() bool {
		return len(g.out.logLines("secret file reloaded")) > 0
	})

	vol.swap(map[string]string{"api-key": "", "account-id": account + "\n"})
	const metric = `bluetape_gateway_secret_reload_errors_total{secret="api_key"} 1`
	var metrics string
	waitFor(t, 10*time.Second, "the failed reload in the metrics", func() bool {
		_, metrics = get(g.admin + "/metrics")
		return strings.Contains(metrics, metric)
	})
	lines := g.out.logLines("reloading a secret file failed; keeping the last good value")
	if len(lines) != 1 || lines[0]["setting"] != "BLUETAPE_API_KEY_FILE" || lines[0]["level"] != "ERROR" {
		t.Errorf("log lines for the failed reload %v; want one error naming BLUETAPE_API_KEY_FILE", lines)
	}
	before := up.seen(key2)
	request()
	if up.seen(key2) != before+1 {
		t.Errorf("after the failed reload the upstream did not get the last good key")
	}
	if status, _ := get(g.admin + "/readyz"); status != 200 {
		t.Errorf("readyz %d after a failed reload; want 200", status)
	}
	for _, secret := range []string{key1, key2, account} {
		if strings.Contains(g.out.String(), secret) || strings.Contains(metrics, secret) {
			t.Errorf("a credential appears in the log or the metrics")
		}
	}

	g.signal(t, syscall.SIGTERM)
	if err := g.wait(t, 15*time.Second); err != nil {
		t.Errorf("exit after SIGTERM: %v; want status 0", err)
	}
}

// SIGTERM: readiness fails at once while the API keeps answering for the
// drain delay; then a request held in the upstream since before the
// signal completes with 200, and the process exits 0.
func TestGracefulShutdown(t *testing.T) {
	up := newBluetape(t)
	const drain = 2 * time.Second
	g := startGateway(t, map[string]string{
		"BLUETAPE_BASE_URL":        up.base(),
		"BLUETAPE_API_KEY":         "e2e-key",
		"BLUETAPE_ACCOUNT_ID":      "e2e-account",
		"GATEWAY_UPSTREAM_TIMEOUT": "30s",
		"GATEWAY_DRAIN_DELAY":      drain.String(),
		"GATEWAY_SHUTDOWN_TIMEOUT": "20s",
	})
	if status, _ := get(g.admin + "/readyz"); status != 200 {
		t.Fatalf("readyz %d before the signal; want 200", status)
	}
	held := make(chan int, 1)
	go func() {
		status, _ := get(g.api + "/customers/held-1/signup")
		held <- status
	}()
	select {
	case <-up.held:
	case <-time.After(10 * time.Second):
		t.Fatal("the held request did not reach the upstream")
	}

	g.signal(t, syscall.SIGTERM)
	signalled := time.Now()
	waitFor(t, 2*time.Second, "readyz to fail", func() bool {
		status, _ := get(g.admin + "/readyz")
		return status == http.StatusServiceUnavailable
	})
	if d := time.Since(signalled); d > drain/2 {
		t.Errorf("readyz failed %v after the signal; want at once", d)
	}
	if status, body := get(g.api + "/customers/during-drain/signup"); status != 200 {
		t.Errorf("during the drain delay: status %d (%s); want 200", status, body)
	}
	if status, _ := get(g.admin + "/healthz"); status != 200 {
		t.Errorf("healthz %d while draining; want 200", status)
	}
	waitFor(t, drain+10*time.Second, "the drain delay to end", func() bool {
		return len(g.out.logLines("shutting down: finishing requests in flight")) > 0
	})
	if d := time.Since(signalled); d < drain {
		t.Errorf("drain ended %v after the signal; want at least %v", d, drain)
	}
	select {
	case <-g.exited:
		t.Fatalf("the gateway exited with a request in flight (%v)", g.exitErr)
	default:
	}
	if status, _ := get(g.api + "/customers/after-drain/signup"); status != 0 {
		t.Errorf("a new request after the drain got status %d; want the connection refused", status)
	}

	up.releaseAll()
	select {
	case status := <-held:
		if status != 200 {
			t.Errorf("request in flight at SIGTERM: status %d; want 200", status)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the request in flight did not complete")
	}
	if err := g.wait(t, 10*time.Second); err != nil {
		t.Errorf("exit: %v; want status 0", err)
	}
}

// A second signal ends the process at once, without waiting out the
// drain delay.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	up := newBluetape(t)
	g := startGateway(t, map[string]string{
		"BLUETAPE_BASE_URL":   up.base(),
		"BLUETAPE_API_KEY":    "e2e-key",
		"BLUETAPE_ACCOUNT_ID": "e2e-account",
		"GATEWAY_DRAIN_DELAY": "60s",
	})
	g.signal(t, syscall.SIGTERM)
	waitFor(t, 5*time.Second, "readyz to fail", func() bool {
		status, _ := get(g.admin + "/readyz")
		return status == http.StatusServiceUnavailable
	})
	second := time.Now()
	g.signal(t, syscall.SIGTERM)
	g.wait(t, 5*time.Second)
	if d := time.Since(second); d > 3*time.Second {
		t.Errorf("exited %v after the second signal; want at once", d)
	}
}
