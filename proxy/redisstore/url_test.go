package redisstore

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// fast is what degradeFast sets on each options type.
type fast struct {
	dial, read, write, pool time.Duration
	ctxTimeout, noIdentity  bool
	retries, dialerRetries  int
}

// The URL's form chooses the client: master_name a Sentinel's primary,
// addr without master_name a Cluster, anything else one server; each
// fails fast.
func TestParseURLChoosesClient(t *testing.T) {
	const timeout = 70 * time.Millisecond
	want := fast{timeout, timeout, timeout, timeout, true, true, -1, 1}
	cases := []struct {
		url, kind, where string
		check            func(*testing.T, target)
	}{
		{url: "redis://:s3cret@10.0.0.1:6379/2", kind: "server", where: "10.0.0.1:6379",
			check: func(t *testing.T, tg target) {
				if tg.server.DB != 2 || tg.server.Password != "s3cret" {
					t.Errorf("DB %d, password %q; want 2, s3cret", tg.server.DB, tg.server.Password)
				}
			}},
		{url: "rediss://10.0.0.1:6380?pool_size=7", kind: "server", where: "10.0.0.1:6380",
			check: func(t *testing.T, tg target) {
				if tg.server.TLSConfig == nil || tg.server.PoolSize != 7 {
					t.Errorf("TLS %v, pool size %d; want TLS, 7", tg.server.TLSConfig != nil, tg.server.PoolSize)
				}
			}},
		// A Unix socket is always one server.
		{url: "unix:///run/redis.sock?db=1", kind: "server", where: "/run/redis.sock",
			check: func(t *testing.T, tg target) {
				if tg.server.Network != "unix" || tg.server.DB != 1 {
					t.Errorf("network %q, DB %d; want unix, 1", tg.server.Network, tg.server.DB)
				}
			}},
		{url: "redis://:s3cret@10.0.0.1:26379/3?master_name=mymaster&addr=10.0.0.2:26379&password=primary-s3cret",
			kind: "sentinel", where: `primary "mymaster" of Sentinels 10.0.0.1:26379,10.0.0.2:26379`,
			check: func(t *testing.T, tg target) {
				o := tg.sentinel
				if o.MasterName != "mymaster" || o.DB != 3 || o.SentinelPassword != "s3cret" || o.Password != "primary-s3cret" {
					t.Errorf("master %q, DB %d, Sentinel password %q, primary password %q",
						o.MasterName, o.DB, o.SentinelPassword, o.Password)
				}
			}},
		// master_name wins over addr, which then names more Sentinels.
		{url: "redis://10.0.0.1:26379?addr=10.0.0.2:26379&master_name=m", kind: "sentinel",
			where: `primary "m" of Sentinels 10.0.0.1:26379,10.0.0.2:26379`},
		{url: "redis://:s3cret@10.0.0.1:7000?addr=10.0.0.2:7000&addr=10.0.0.3:7000&pool_size=9", kind: "cluster",
			where: "cluster 10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000",
			check: func(t *testing.T, tg target) {
				if tg.cluster.Password != "s3cret" || tg.cluster.PoolSize != 9 {
					t.Errorf("password %q, pool size %d; want s3cret, 9", tg.cluster.Password, tg.cluster.PoolSize)
				}
				if !tg.cluster.DisableRoutingPolicies || tg.cluster.MaxRedirects != 0 {
					t.Errorf("legacy routing %v, max redirects %d; want slot routing and go-redis's redirections",
						tg.cluster.DisableRoutingPolicies, tg.cluster.MaxRedirects)
				}
			}},
		{url: "rediss://10.0.0.1:7000?addr=10.0.0.1:7000", kind: "cluster", where: "cluster 10.0.0.1:7000,10.0.0.1:7000",
			check: func(t *testing.T, tg target) {
				if tg.cluster.TLSConfig == nil {
					t.Error("no TLS")
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.url, func(t *testing.T) {
			tg, err := parseURL(tc.url, timeout)
			if err != nil {
				t.Fatal(err)
			}
			var kinds []string
			var got fast
			var client redis.UniversalClient
			if o := tg.server; o != nil {
				kinds = append(kinds, "server")
				got = fast{o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolTimeout,
					o.ContextTimeoutEnabled, o.DisableIdentity, o.MaxRetries, o.DialerRetries}
			}
			if o := tg.sentinel; o != nil {
				kinds = append(kinds, "sentinel")
				got = fast{o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolTimeout,
					o.ContextTimeoutEnabled, o.DisableIdentity, o.MaxRetries, o.DialerRetries}
			}
			if o := tg.cluster; o != nil {
				kinds = append(kinds, "cluster")
				got = fast{o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolTimeout,
					o.ContextTimeoutEnabled, o.DisableIdentity, o.MaxRetries, o.DialerRetries}
			}
			if !slices.Equal(kinds, []string{tc.kind}) {
				t.Fatalf("options for %v; want %s only", kinds, tc.kind)
			}
			if got != want {
				t.Errorf("settings %+v; want %+v", got, want)
			}
			if s := tg.String(); s != tc.where || strings.Contains(s, "s3cret") {
				t.Errorf("described as %q; want %q", s, tc.where)
			}
			if tc.check != nil {
				tc.check(t, tg)
			}

			client = tg.client()
			defer client.Close()
			switch c := client.(type) {
			case *redis.ClusterClient:
				if tc.kind != "cluster" {
					t.Errorf("client %T for a %s URL", c, tc.kind)
				}
			case *redis.Client:
				failover := c.Options().Addr == "FailoverClient"
				if tc.kind == "cluster" || failover != (tc.kind == "sentinel") {
					t.Errorf("client %T (failover %v) for a %s URL", c, failover, tc.kind)
				}
			default:
				t.Errorf("client %T", c)
			}
		})
	}
}

// An invalid URL of any form is refused at start, and the error never
// shows the password.
func TestNewRejectsBadURLOfEachForm(t *testing.T) {
	for name, url := range map[string]string{
		"server/scheme":       "http://:s3cret@127.0.0.1:6379",
		"server/port":         "redis://:s3cret@127.0.0.1:port/0",
		"server/option":       "redis://:s3cret@127.0.0.1:6379?bogus=s3cret",
		"unix/addr":           "unix://:s3cret@/run/redis.sock?addr=127.0.0.1:7000",
		"unix/master_name":    "unix://:s3cret@/run/redis.sock?master_name=m",
		"sentinel/scheme":     "http://:s3cret@127.0.0.1:26379?master_name=m",
		"sentinel/port":       "redis://:s3cret@127.0.0.1:port?master_name=m",
		"sentinel/escape":     "redis://:s3cret%zz@127.0.0.1:26379?master_name=m",
		"sentinel/database":   "redis://:s3cret@127.0.0.1:26379/notadb?master_name=m",
		"sentinel/number":     "redis://:s3cret@127.0.0.1:26379?master_name=m&pool_size=many",
		"sentinel/option":     "redis://127.0.0.1:26379?master_name=m&password=s3cret&bogus=1",
		"sentinel/addr":       "redis://:s3cret@127.0.0.1:26379?master_name=m&addr=nohost",
		"sentinel/empty":      "redis://:s3cret@127.0.0.1:26379?master_name=",
		"sentinel/replicas":   "redis://:s3cret@127.0.0.1:26379?master_name=m&replica_only=true",
		"sentinel/by-latency": "redis://:s3cret@127.0.0.1:26379?master_name=m&route_by_latency=true",
		"sentinel/randomly":   "redis://:s3cret@127.0.0.1:26379?master_name=m&route_randomly=true",
		"cluster/scheme":      "http://:s3cret@127.0.0.1:7000?addr=127.0.0.1:7001",
		"cluster/port":        "redis://:s3cret@127.0.0.1:port?addr=127.0.0.1:7001",
		"cluster/addr":        "redis://:s3cret@127.0.0.1:7000?addr=nohost",
		"cluster/empty-addr":  "redis://:s3cret@127.0.0.1:7000?addr=",
		"cluster/duration":    "rediss://:s3cret@127.0.0.1:7000?addr=127.0.0.1:7001&dial_timeout=soon",
		"cluster/option":      "redis://:s3cret@127.0.0.1:7000?addr=127.0.0.1:7001&bogus=s3cret",
		"cluster/database":    "redis://:s3cret@127.0.0.1:7000?addr=127.0.0.1:7001&db=1",
		"cluster/read-only":   "redis://:s3cret@127.0.0.1:7000?addr=127.0.0.1:7001&read_only=true",
		"cluster/by-latency":  "redis://:s3cret@127.0.0.1:7000?addr=127.0.0.1:7001&route_by_latency=true",
		"cluster/randomly":    "redis://:s3cret@127.0.0.1:7000?addr=127.0.0.1:7001&route_randomly=true",
	} {
		t.Run(name, func(t *testing.T) {
			err := newRejected(t, url)
			if !strings.HasPrefix(err.Error(), "parsing the Redis URL: ") {
				t.Errorf("error %q; want it to say it is about the Redis URL", err)
			}
		})
	}
}
