package identity

import (
	"crypto/sha256"
	"sync"
	"time"
)

// tokenCache remembers verified tokens by their SHA-256 until they expire.
// It holds at most max entries: when full, it drops the expired ones, and
// if none has expired, an arbitrary one. Its methods are safe to be called
// concurrently.
type tokenCache struct {
	max int

	mu      sync.RWMutex
	entries map[[sha256.Size]byte]Identity
}

func newTokenCache(max int) *tokenCache {
	return &tokenCache{max: max, entries: make(map[[sha256.Size]byte]Identity)}
}

// get returns the identity remembered for the token whose hash is sum. The
// caller checks its expiry.
func (c *tokenCache) get(sum [sha256.Size]byte) (Identity, bool) {
	c.mu.RLock()
	id, ok := c.entries[sum]
	c.mu.RUnlock()
	return id, ok
}

func (c *tokenCache) add(sum [sha256.Size]byte, id Identity, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[sum]; !ok && len(c.entries) >= c.max {
		for k, e := range c.entries {
			if now.After(e.Expiry.Add(Leeway)) {
				delete(c.entries, k)
			}
		}
		for k := range c.entries {
			if len(c.entries) < c.max {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[sum] = id
}

func (c *tokenCache) delete(sum [sha256.Size]byte) {
	c.mu.Lock()
	delete(c.entries, sum)
	c.mu.Unlock()
}

func (c *tokenCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
