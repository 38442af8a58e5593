package identity

import (
	"strings"
	"sync"
	"time"
)

// tokenCache remembers verified tokens until they expire. It is keyed by
// the token itself: a lookup then costs a map hash of the string, with no
// allocation, where a SHA-256 key costs a hash of about 1 KB and a copy
// of the token to hash it. The memory is bounded all the same (max
// entries of at most MaxTokenSize bytes), and the tokens are the ones the
// gateway receives anyway.
//
// It holds at most max entries: when full, it drops the expired ones, and
// if none has expired, an arbitrary one. Its methods are safe to be called
// concurrently.
type tokenCache struct {
	max int

	mu      sync.RWMutex
	entries map[string]Identity
}

func newTokenCache(max int) *tokenCache {
	return &tokenCache{max: max, entries: make(map[string]Identity)}
}

// get returns the identity remembered for token. The caller checks its
// expiry.
func (c *tokenCache) get(token string) (Identity, bool) {
	c.mu.RLock()
	id, ok := c.entries[token]
	c.mu.RUnlock()
	return id, ok
}

func (c *tokenCache) add(token string, id Identity, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[token]; !ok && len(c.entries) >= c.max {
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
	// A clone, so that the entry does not keep a larger buffer the token
	// may be part of.
	c.entries[strings.Clone(token)] = id
}

func (c *tokenCache) delete(token string) {
	c.mu.Lock()
	delete(c.entries, token)
	c.mu.Unlock()
}

func (c *tokenCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
