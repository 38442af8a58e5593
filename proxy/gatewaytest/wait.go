package gatewaytest

import (
	"testing"
	"time"
)

// pollInterval is the pause between two calls of a WaitFor condition.
const pollInterval = 10 * time.Millisecond

// WaitFor calls cond until it returns true, pausing 10ms between calls,
// and fails the test, naming what it waited for, once limit has passed
// without cond holding. cond runs on the test's goroutine and may itself
// fail the test.
func WaitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(pollInterval)
	}
}
