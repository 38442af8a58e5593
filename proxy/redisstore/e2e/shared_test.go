package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bluetape/bluetape-gateway/metrics"
	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
	"github.com/bluetape/bluetape-gateway/proxy/redisstore/redistest"
)

// entry encodes a cached answer as the replicas store it (format 1, a
// found answer fresh for an hour) around body.
func entry(body string) string {
	b := make([]byte, 10)
	b[0], b[1] = 1, 'F'
	binary.BigEndian.PutUint64(b[2:], uint64(time.Now().Add(time.Hour).UnixNano()))
	return string(b) + body
}

// What another program writes into the gateway's keys is not served: the
// gateway takes it as a miss, asks BlueTape and answers BlueTape's answer.
func TestInvalidEntriesInRedisAreMisses(t *testing.T) {
	srv := redistest.Start(t)
	rdb := rawClient(t, srv.Addr, "")
	up := newUpstream(t, 0)
	g := gatewaytest.Built.Start(t, env(up, "GATEWAY_REDIS_URL="+srv.URL()))

	long := "https://www.bluetape.com/signup?id=" + strings.Repeat("a", 60<<10)
	values := map[string]string{
		"junk":        "\x00\xffgarbage",
		"userinfo":    entry(`{"signUpUrl":"https://evil:pw@www.bluetape.com/signup?id=1"}`),
		"holds-key":   entry(`{"signUpUrl":"https://www.bluetape.com/signup?k=` + testKey + `"}`),
		"holds-acct":  entry(`{"signUpUrl":"https://www.bluetape.com/signup?a=` + strings.ToUpper(testAccount) + `"}`),
		"60kb-url":    entry(`{"signUpUrl":"` + long + `"}`),
		"not-json":    entry(`signUpUrl=https://www.bluetape.com/`),
		"extra-field": entry(`{"signUpUrl":"https://www.bluetape.com/signup?id=x","signUpURL":"https://evil.example/"}`),
	}
	for name, v := range values {
		if err := rdb.Set(context.Background(), "bluetape-gateway:v1:cache:"+name, v, time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for name := range values {
		code, body := get(g, "/customers/"+name+"/signup")
		want := `"https://www.bluetape.com/signup?id=` + name + `"`
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("%s: got %d %s; want 200 with BlueTape's answer", name, code, body)
		}
		if n := up.callsOf(name); n != 1 {
			t.Errorf("%s: %d upstream calls; want 1 (a miss)", name, n)
		}
	}
	if v, _ := metric(t, g, metrics.RedisInvalidEntriesTotal); v != float64(len(values)) {
		t.Errorf("%s = %v; want %d", metrics.RedisInvalidEntriesTotal, v, len(values))
	}
	out := g.Output()
	for _, secret := range []string{testKey, strings.ToUpper(testAccount), "evil:pw", "garbage"} {
		if strings.Contains(out, secret) {
			t.Errorf("the log quotes an invalid entry (%q)", secret)
		}
	}
	if n := len(g.Stdout.Records("an entry read back from Redis is invalid; taking it as a miss and dropping it")); n != len(values) {
		t.Errorf("%d log lines about invalid entries; want %d", n, len(values))
	}
}

// bluetape_gateway_redis_degraded is 1 while Redis is away and 0 once it
// answers again; it exists only in shared mode.
func TestDegradedGauge(t *testing.T) {
	srv := redistest.Start(t)
	up := newUpstream(t, 0)
	g := gatewaytest.Built.Start(t, env(up, "GATEWAY_REDIS_URL="+srv.URL()))
	if v, ok := metric(t, g, metrics.RedisDegraded); !ok || v != 0 {
		t.Fatalf("%s = %v (present %v); want 0", metrics.RedisDegraded, v, ok)
	}

	srv.Stop()
	n := 0
	gatewaytest.WaitFor(t, 15*time.Second, "the replica to report itself degraded", func() bool {
		n++
		get(g, fmt.Sprintf("/customers/down-%d/signup", n)) // a Redis operation that fails
		v, _ := metric(t, g, metrics.RedisDegraded)
		return v == 1
	})
	srv.Restart(t)
	// No request needed: the replica probes Redis by itself.
	gatewaytest.WaitFor(t, 15*time.Second, "the replica to share again", func() bool {
		v, _ := metric(t, g, metrics.RedisDegraded)
		return v == 0
	})

	local := gatewaytest.Built.Start(t, env(up))
	if _, ok := metric(t, local, metrics.RedisDegraded); ok {
		t.Errorf("%s is exported without GATEWAY_REDIS_URL", metrics.RedisDegraded)
	}
}

// GATEWAY_REDIS_URL_FILE is followed when it rotates: the replica moves to
// the new Redis (here one with a password); a rotation to an invalid URL
// keeps the last good one and is counted. The URL is never logged.
func TestRedisURLFileRotates(t *testing.T) {
	const password = "rotated-redis-pw-93d1"
	first, second := redistest.Start(t), redistest.Start(t)
	firstClient := rawClient(t, first.Addr, "")
	if err := rawClient(t, second.Addr, "").ConfigSet(context.Background(), "requirepass", password).Err(); err != nil {
		t.Fatal(err)
	}
	secondClient := rawClient(t, second.Addr, password)
	vol := gatewaytest.NewSecretVolume(t, map[string]string{"redis-url": first.URL() + "\n"})
	up := newUpstream(t, 0)
	g := gatewaytest.Built.Start(t, env(up, "GATEWAY_REDIS_URL_FILE="+vol.Path("redis-url")))

	has := func(rdbExists func(key string) bool, id string) bool {
		return rdbExists("bluetape-gateway:v1:cache:" + id)
	}
	inFirst := func(key string) bool { return firstClient.Exists(context.Background(), key).Val() == 1 }
	inSecond := func(key string) bool { return secondClient.Exists(context.Background(), key).Val() == 1 }

	if code, _ := get(g, "/customers/r0/signup"); code != http.StatusOK || !has(inFirst, "r0") {
		t.Fatalf("before rotation: %d, cached in the first Redis %v", code, has(inFirst, "r0"))
	}

	vol.Update(map[string]string{"redis-url": "redis://:" + password + "@" + second.Addr + "\n"})
	n := 0
	gatewaytest.WaitFor(t, 15*time.Second, "answers to be cached in the second Redis", func() bool {
		n++
		id := fmt.Sprintf("r1-%d", n)
		code, _ := get(g, "/customers/"+id+"/signup")
		return code == http.StatusOK && has(inSecond, id)
	})

	vol.Update(map[string]string{"redis-url": "http://:" + password + "@" + first.Addr + "\n"})
	gatewaytest.WaitFor(t, 15*time.Second, "the bad rotation to be counted", func() bool {
		v, _ := metric(t, g, metrics.SecretReloadErrorsTotal, "secret", "redis_url")
		return v == 1
	})
	if code, _ := get(g, "/customers/r2/signup"); code != http.StatusOK || !has(inSecond, "r2") || has(inFirst, "r2") {
		t.Errorf("after a bad rotation: %d, in the second Redis %v; want the last good URL kept", code, has(inSecond, "r2"))
	}
	if v, _ := metric(t, g, metrics.RedisErrorsTotal); v != 0 {
		t.Errorf("%s = %v; want 0: the old client closed only after its operations", metrics.RedisErrorsTotal, v)
	}
	if out := g.Output(); strings.Contains(out, password) {
		t.Errorf("the log shows the Redis password:\n%s", out)
	}
}
