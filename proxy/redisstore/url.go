package redisstore

import (
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// target is where a Redis URL leads: exactly one of its fields is set.
type target struct {
	server   *redis.Options         // one server
	sentinel *redis.FailoverOptions // the primary that Sentinels name
	cluster  *redis.ClusterOptions  // a Redis Cluster
}

// parseURL reads a Redis URL, as Options.URL describes, into the options
// of the client it calls for, with every operation bounded by timeout and
// never retried. Its errors never show the URL's password.
func parseURL(raw string, timeout time.Duration) (target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return target{}, urlError(err)
	}
	q := u.Query()
	switch {
	case u.Scheme == "unix" || (!q.Has("master_name") && !q.Has("addr")):
		o, err := redis.ParseURL(raw)
		if err != nil {
			return target{}, urlError(err)
		}
		degradeFast(o, timeout)
		return target{server: o}, nil

	case q.Has("master_name"):
		o, err := redis.ParseFailoverURL(raw)
		if err != nil {
			return target{}, urlError(err)
		}
		switch {
		case o.MasterName == "":
			return target{}, urlError(errors.New("master_name is empty"))
		case o.ReplicaOnly || o.RouteByLatency || o.RouteRandomly:
			return target{}, urlError(errors.New(
				"replica_only, route_by_latency and route_randomly are not supported: every command goes to the primary"))
		}
		degradeFastSentinel(o, timeout)
		return target{sentinel: o}, nil

	default:
		o, err := redis.ParseClusterURL(raw)
		if err != nil {
			return target{}, urlError(err)
		}
		if o.ReadOnly || o.RouteByLatency || o.RouteRandomly {
			return target{}, urlError(errors.New(
				"read_only, route_by_latency and route_randomly are not supported: every command goes to a primary"))
		}
		degradeFastCluster(o, timeout)
		return target{cluster: o}, nil
	}
}

// urlError wraps an error met reading the URL. A url.Error quotes the
// whole URL, password included; only what it wraps is kept.
func urlError(err error) error {
	if ue := (*url.Error)(nil); errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("parsing the Redis URL: %w", err)
}

// client returns a new client for t.
func (t target) client() redis.UniversalClient {
	switch {
	case t.sentinel != nil:
		return redis.NewFailoverClient(t.sentinel)
	case t.cluster != nil:
		return redis.NewClusterClient(t.cluster)
	default:
		return redis.NewClient(t.server)
	}
}

// poolSize returns the size of t's connection pool (per node for a
// Cluster), set by degradeFast and its variants.
func (t target) poolSize() int {
	switch {
	case t.sentinel != nil:
		return t.sentinel.PoolSize
	case t.cluster != nil:
		return t.cluster.PoolSize
	default:
		return t.server.PoolSize
	}
}

// defaultPoolSize is go-redis's default pool size, made explicit so that
// the gateway bounds its operations in flight to it.
func defaultPoolSize(n int) int {
	if n > 0 {
		return n
	}
	return 10 * runtime.GOMAXPROCS(0)
}

// String says where t leads, for the log, without credentials.
func (t target) String() string {
	switch {
	case t.sentinel != nil:
		return fmt.Sprintf("primary %q of Sentinels %s", t.sentinel.MasterName, strings.Join(t.sentinel.SentinelAddrs, ","))
	case t.cluster != nil:
		return "cluster " + strings.Join(t.cluster.Addrs, ",")
	default:
		return t.server.Addr
	}
}

// degradeFast makes every operation fail within timeout rather than wait
// or retry: the caller has a local fallback, and a slow answer costs more
// than a missed one.
func degradeFast(o *redis.Options, timeout time.Duration) {
	o.PoolSize = defaultPoolSize(o.PoolSize)
	o.MinIdleConns = max(o.MinIdleConns, o.PoolSize)
	o.DialTimeout = timeout
	o.ReadTimeout = timeout
	o.WriteTimeout = timeout
	o.PoolTimeout = timeout
	o.ContextTimeoutEnabled = true
	o.MaxRetries = -1
	o.DialerRetries = 1
	o.DisableIdentity = true
	o.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
}

// degradeFastSentinel is degradeFast for the Sentinel client, whose
// settings apply to its connections to the Sentinels and to the primary
// alike. (It never uses maintenance notifications.)
func degradeFastSentinel(o *redis.FailoverOptions, timeout time.Duration) {
	o.PoolSize = defaultPoolSize(o.PoolSize)
	o.MinIdleConns = max(o.MinIdleConns, o.PoolSize)
	o.DialTimeout = timeout
	o.ReadTimeout = timeout
	o.WriteTimeout = timeout
	o.PoolTimeout = timeout
	o.ContextTimeoutEnabled = true
	o.MaxRetries = -1
	o.DialerRetries = 1
	o.DisableIdentity = true
}

// degradeFastCluster is degradeFast for the Cluster client, whose settings
// apply to its connection to each node. It still follows a MOVED or ASK
// redirection, within the same operation timeout: a resharding or
// failover is not a failure of Redis.
//
// The legacy routing (by key slot only) keeps each operation to one node
// and one round trip: the command-policy routing would first fetch
// COMMAND, under a lock shared by all operations and with a timeout of
// its own, whenever it has not got it yet.
func degradeFastCluster(o *redis.ClusterOptions, timeout time.Duration) {
	o.PoolSize = defaultPoolSize(o.PoolSize)
	o.MinIdleConns = max(o.MinIdleConns, o.PoolSize)
	o.DialTimeout = timeout
	o.ReadTimeout = timeout
	o.WriteTimeout = timeout
	o.PoolTimeout = timeout
	o.ContextTimeoutEnabled = true
	o.MaxRetries = -1
	o.DialerRetries = 1
	o.DisableIdentity = true
	o.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	o.DisableRoutingPolicies = true
}
