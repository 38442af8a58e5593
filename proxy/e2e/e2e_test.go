package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
)

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

// bluetape is a fake BlueTape: it answers ids with a signup URL, holds ids
// starting with "held" until released, and records the keys and the
// trace context it receives.
type bluetape struct {
	*httptest.Server
	mu          sync.Mutex
	keys        map[string]int
	traces      []traceContext
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
		b.traces = append(b.traces, traceContext{r.Header.Get("Traceparent"), r.Header.Get("Tracestate")})
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

// traceContext is the W3C trace context of one request to the fake.
type traceContext struct{ parent, state string }

// received returns the trace context of each request received so far.
func (b *bluetape) received() []traceContext {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]traceContext(nil), b.traces...)
}

func (b *bluetape) base() string { return b.URL + "/genericBthubService" }

// env is the environment of a gateway calling b with a fixed key and
// account, followed by extra.
func (b *bluetape) env(extra ...string) []string {
	return append([]string{"BLUETAPE_BASE_URL=" + b.base(), "BLUETAPE_API_KEY=e2e-key", "BLUETAPE_ACCOUNT_ID=e2e-account"}, extra...)
}

// The secret files are re-read when the kubelet swaps them: the next
// upstream call carries the new key, with no restart. A swap to an empty
// file keeps the last good key, and says so in the log and the metrics.
func TestSecretFileRotation(t *testing.T) {
	const key1, key2, account = "e2e-key-one-0b1c2d3e", "e2e-key-two-4f5a6b7c", "e2e-account-99"
	up := newBluetape(t)
	vol := gatewaytest.NewSecretVolume(t, map[string]string{"api-key": key1 + "\n", "account-id": account + "\n"})
	g := gatewaytest.Built.Start(t, []string{
		"BLUETAPE_BASE_URL=" + up.base(),
		"BLUETAPE_API_KEY_FILE=" + vol.Path("api-key"),
		"BLUETAPE_ACCOUNT_ID_FILE=" + vol.Path("account-id"),
	})
	n := 0
	request := func() {
		t.Helper()
		n++
		id := fmt.Sprintf("rot-%d", n)
		if status, body := get(g.API + "/customers/" + id + "/signup"); status != 200 || !strings.Contains(body, "id="+id+`"`) {
			t.Fatalf("%s: status %d (%s); want 200", id, status, body)
		}
	}
	request()
	if up.seen(key1) != 1 {
		t.Fatalf("upstream saw the first key %d times; want 1", up.seen(key1))
	}

	vol.Update(map[string]string{"api-key": key2 + "\n", "account-id": account + "\n"})
	gatewaytest.WaitFor(t, 10*time.Second, "the new key upstream", func() bool {
		request()
		return up.seen(key2) > 0
	})
	// Info lines are written in batches, at most 100ms late.
	gatewaytest.WaitFor(t, 10*time.Second, "the reload in the log", func() bool {
		return len(g.Stdout.Records("secret file reloaded")) > 0
	})

	vol.Update(map[string]string{"api-key": "", "account-id": account + "\n"})
	const metric = `bluetape_gateway_secret_reload_errors_total{secret="api_key"} 1`
	var metrics string
	gatewaytest.WaitFor(t, 10*time.Second, "the failed reload in the metrics", func() bool {
		_, metrics = get(g.Admin + "/metrics")
		return strings.Contains(metrics, metric)
	})
	lines := g.Stdout.Records("reloading a secret file failed; keeping the last good value")
	if len(lines) != 1 || lines[0]["setting"] != "BLUETAPE_API_KEY_FILE" || lines[0]["level"] != "ERROR" {
		t.Errorf("log lines for the failed reload %v; want one error naming BLUETAPE_API_KEY_FILE", lines)
	}
	before := up.seen(key2)
	request()
	if up.seen(key2) != before+1 {
		t.Errorf("after the failed reload the upstream did not get the last good key")
	}
	if status, _ := get(g.Admin + "/readyz"); status != 200 {
		t.Errorf("readyz %d after a failed reload; want 200", status)
	}
	wantNotShown(t, g, metrics, key1, key2, account)
	g.Stop(t)
}

// wantNotShown fails the test if one of secrets appears in g's output or
// in metrics, a scrape of them.
func wantNotShown(t *testing.T, g *gatewaytest.Gateway, metrics string, secrets ...string) {
	t.Helper()
	for _, secret := range secrets {
		if strings.Contains(g.Output(), secret) || strings.Contains(metrics, secret) {
			t.Errorf("a secret appears in the log or the metrics")
		}
	}
}

// SIGTERM: readiness fails at once while the API keeps answering for the
// drain delay; then a request held in the upstream since before the
// signal completes with 200, and the process exits 0.
func TestGracefulShutdown(t *testing.T) {
	up := newBluetape(t)
	const drain = 2 * time.Second
	g := gatewaytest.Built.Start(t, up.env(
		"GATEWAY_UPSTREAM_TIMEOUT=30s",
		"GATEWAY_DRAIN_DELAY="+drain.String(),
		"GATEWAY_SHUTDOWN_TIMEOUT=20s",
	))
	if status, _ := get(g.Admin + "/readyz"); status != 200 {
		t.Fatalf("readyz %d before the signal; want 200", status)
	}
	held := make(chan int, 1)
	go func() {
		status, _ := get(g.API + "/customers/held-1/signup")
		held <- status
	}()
	select {
	case <-up.held:
	case <-time.After(10 * time.Second):
		t.Fatal("the held request did not reach the upstream")
	}

	g.Signal(t, syscall.SIGTERM)
	signalled := time.Now()
	gatewaytest.WaitFor(t, 2*time.Second, "readyz to fail", func() bool {
		status, _ := get(g.Admin + "/readyz")
		return status == http.StatusServiceUnavailable
	})
	if d := time.Since(signalled); d > drain/2 {
		t.Errorf("readyz failed %v after the signal; want at once", d)
	}
	if status, body := get(g.API + "/customers/during-drain/signup"); status != 200 {
		t.Errorf("during the drain delay: status %d (%s); want 200", status, body)
	}
	if status, _ := get(g.Admin + "/healthz"); status != 200 {
		t.Errorf("healthz %d while draining; want 200", status)
	}
	gatewaytest.WaitFor(t, drain+10*time.Second, "the drain delay to end", func() bool {
		return len(g.Stdout.Records("shutting down: finishing requests in flight")) > 0
	})
	if d := time.Since(signalled); d < drain {
		t.Errorf("drain ended %v after the signal; want at least %v", d, drain)
	}
	if g.Exited() {
		t.Fatalf("the gateway exited with a request in flight (%v)", g.Err())
	}
	if status, _ := get(g.API + "/customers/after-drain/signup"); status != 0 {
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
	if err := g.Wait(t, 10*time.Second); err != nil {
		t.Errorf("exit: %v; want status 0", err)
	}
}

// A second signal ends the process at once, without waiting out the
// drain delay.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	up := newBluetape(t)
	g := gatewaytest.Built.Start(t, up.env("GATEWAY_DRAIN_DELAY=60s"))
	g.Signal(t, syscall.SIGTERM)
	gatewaytest.WaitFor(t, 5*time.Second, "readyz to fail", func() bool {
		status, _ := get(g.Admin + "/readyz")
		return status == http.StatusServiceUnavailable
	})
	second := time.Now()
	g.Signal(t, syscall.SIGTERM)
	g.Wait(t, 5*time.Second)
	if d := time.Since(second); d > 3*time.Second {
		t.Errorf("exited %v after the second signal; want at once", d)
	}
}
