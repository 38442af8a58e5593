package redisstore

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bluetape/bluetape-gateway/metrics"
)

// TestCircuitOnAFakeClock runs the Redis circuit through a failure, the
// skipped operations, one probe at a time and the recovery in a synctest
// bubble, where gobreaker's clock is the bubble's: no real wait.
func TestCircuitOnAFakeClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, err := metrics.New(prometheus.NewRegistry(), "test", nil)
		if err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		var degraded []bool
		c := newCircuit(5*time.Second, m, slog.New(slog.NewTextHandler(&logs, nil)), func(d bool) { degraded = append(degraded, d) })

		done, ok := c.allow()
		if !ok {
			t.Fatal("a closed circuit refused an operation")
		}
		done(errors.New("i/o timeout"))
		if !c.degraded() || len(degraded) != 1 || !degraded[0] {
			t.Fatalf("after a failure: degraded %v, calls %v; want the circuit open and one call (true)", c.degraded(), degraded)
		}
		if !strings.Contains(logs.String(), "i/o timeout") {
			t.Errorf("the opening line lacks its cause:\n%s", logs.String())
		}

		time.Sleep(5*time.Second - time.Millisecond)
		if _, ok := c.allow(); ok {
			t.Fatal("an operation went to Redis while the circuit was open")
		}
		time.Sleep(2 * time.Millisecond) // past the open time's end
		probe, ok := c.allow()
		if !ok {
			t.Fatal("no probe once the open time was over")
		}
		if _, ok := c.allow(); ok {
			t.Fatal("a second operation went to Redis beside the probe")
		}
		probe(errAbandoned) // says nothing of Redis: the next one probes
		probe, ok = c.allow()
		if !ok {
			t.Fatal("no probe after an abandoned one")
		}
		probe(nil)
		if c.degraded() || len(degraded) != 2 || degraded[1] {
			t.Fatalf("after a good probe: degraded %v, calls %v; want the circuit closed and a second call (false)", c.degraded(), degraded)
		}
	})
}
