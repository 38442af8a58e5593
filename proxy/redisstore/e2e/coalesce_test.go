package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluetape/bluetape-gateway/metrics"
	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
	"github.com/bluetape/bluetape-gateway/proxy/redisstore/redistest"
)

// Two replicas on one CPU each (where go-redis's pool has 10 connections)
// are asked for the same 300 cold ids at once while BlueTape takes 2s per
// answer: every request gets its answer, BlueTape is called once per id,
// Redis never fails, and the waiting costs Redis a few commands per id,
// not the hundreds that polling cost.
func TestSlowUpstreamManyColdIDsTwoReplicas(t *testing.T) {
	const (
		ids              = 300
		maxCommandsPerID = 30
	)
	srv := redistest.Start(t)
	rdb := rawClient(t, srv.Addr, "")
	up := newUpstream(t, 2*time.Second)
	var replicas []*gatewaytest.Gateway
	// Each replica may call BlueTape for up to all 300 ids at once (how
	// the election splits them is not fixed): the upstream cap is raised
	// above that, so that every refusal seen here is shared mode's.
	for range 2 {
		replicas = append(replicas, gatewaytest.Built.Start(t, env(up, "GOMAXPROCS=1", "GATEWAY_REDIS_URL="+srv.URL(),
			"GATEWAY_UPSTREAM_MAX_IN_FLIGHT=400")))
	}
	waitSubscribed(t, rdb, len(replicas))

	before := commandsProcessed(t, rdb)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	for i := range ids {
		for _, g := range replicas {
			wg.Go(func() {
				id := fmt.Sprintf("cold-%03d", i)
				code, body := get(g, "/customers/"+id+"/signup")
				if code != http.StatusOK || !strings.Contains(body, "id="+id+`"`) {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%s: %d %s", id, code, body))
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	commands := commandsProcessed(t, rdb) - before
	defer func() {
		if t.Failed() {
			stats, _ := rdb.Info(context.Background(), "commandstats").Result()
			t.Logf("Redis's commands:\n%s", stats)
		}
	}()

	if len(failures) > 0 {
		t.Errorf("%d of %d requests failed, first: %s", len(failures), 2*ids, failures[0])
	}
	duplicates := 0
	for i := range ids {
		if n := up.callsOf(fmt.Sprintf("cold-%03d", i)); n != 1 {
			duplicates++
			if duplicates <= 3 {
				t.Errorf("id cold-%03d: %d upstream calls; want 1", i, n)
			}
		}
	}
	if duplicates > 0 {
		t.Errorf("%d ids did not get exactly one upstream call", duplicates)
	}
	for i, g := range replicas {
		if v, ok := metric(t, g, metrics.RedisErrorsTotal); !ok || v != 0 {
			t.Errorf("replica %d: %s = %v (present %v); want 0", i, metrics.RedisErrorsTotal, v, ok)
		}
	}
	perID := float64(commands) / ids
	t.Logf("Redis processed %d commands for %d ids asked of 2 replicas: %.1f per id", commands, ids, perID)
	if perID > maxCommandsPerID {
		t.Errorf("%.1f Redis commands per id; want at most %d", perID, maxCommandsPerID)
	}
}
