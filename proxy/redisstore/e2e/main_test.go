package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/redis/go-redis/v9"

	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
)

func TestMain(m *testing.M) { gatewaytest.Main(m) }

// The credentials the replicas send upstream.
const (
	testKey     = "e2e-key-4f1c9a"
	testAccount = "e2e-account-77"
)

// upstream is a fake BlueTape that takes delay to answer each request
// and counts the calls per id.
type upstream struct {
	*httptest.Server
	mu    sync.Mutex
	calls map[string]int
}

func newUpstream(t *testing.T, delay time.Duration) *upstream {
	t.Helper()
	u := &upstream{calls: map[string]int{}}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/integration/customer/"), "/signup")
		u.mu.Lock()
		u.calls[id]++
		u.mu.Unlock()
		if delay > 0 {
			// The upstream's own slowness, which the test is about.
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"signUpUrl": "https://www.bluetape.com/signup?id=%s"}`, id)
	}))
	t.Cleanup(u.Close)
	return u
}

// callsOf returns how many calls id got.
func (u *upstream) callsOf(id string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.calls[id]
}

// env returns a replica's environment in front of up, sharing through
// redisURL when it is not empty, followed by extra.
func env(up *upstream, extra ...string) []string {
	return append([]string{
		"BLUETAPE_BASE_URL=" + up.URL,
		"BLUETAPE_API_KEY=" + testKey,
		"BLUETAPE_ACCOUNT_ID=" + testAccount,
		"GATEWAY_UPSTREAM_TIMEOUT=10s",
		// One caller (the test) sends every request: its limit must not
		// get in the way.
		"GATEWAY_RATE_LIMIT=100000",
		"GATEWAY_RATE_BURST=100000",
	}, extra...)
}

var client = &http.Client{Timeout: 30 * time.Second}

// get requests path of g's API and returns the status and body; a
// transport error is status 0 with the error as body.
func get(g *gatewaytest.Gateway, path string) (int, string) {
	resp, err := client.Get(g.API + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// metric returns the value of the series name{labels} on g's /metrics, and
// whether it is there.
func metric(t *testing.T, g *gatewaytest.Gateway, name string, labels ...string) (float64, bool) {
	t.Helper()
	resp, err := client.Get(g.Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	f := families[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue(), true
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}

// commandsProcessed returns Redis's total_commands_processed.
func commandsProcessed(t *testing.T, rdb *redis.Client) int {
	t.Helper()
	info, err := rdb.Info(context.Background(), "stats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "total_commands_processed:"); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no total_commands_processed in INFO stats:\n%s", info)
	return 0
}

// rawClient is a plain client for looking at Redis.
func rawClient(t *testing.T, addr, password string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, Password: password, DisableIdentity: true})
	t.Cleanup(func() { c.Close() })
	return c
}

// releaseChannel is the channel on which replicas announce released
// locks.
const releaseChannel = "bluetape-gateway:v1:released"

// waitSubscribed waits until n replicas listen on releaseChannel.
func waitSubscribed(t *testing.T, rdb *redis.Client, n int) {
	t.Helper()
	gatewaytest.WaitFor(t, 15*time.Second, "the replicas to subscribe", func() bool {
		m, err := rdb.PubSubNumSub(context.Background(), releaseChannel).Result()
		return err == nil && m[releaseChannel] == int64(n)
	})
}
