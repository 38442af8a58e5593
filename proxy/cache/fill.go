package cache

import "time"

// SetEntry caches e for id as it is, and keeps it for keep from now: an
// entry read from a shared second level, whose freshness was decided where
// it was first cached. e's FreshUntil decides when it stops being fresh,
// keep when it can no longer be served at all (the end of its stale window
// for a successful answer). A negative e (nil Body) is stored even when
// negative caching is off here, since it was cached elsewhere. Body is
// copied. Nothing is stored when keep is not positive.
func (c *Cache) SetEntry(id string, e Entry, keep time.Duration) {
	if keep <= 0 {
		return
	}
	now := c.opts.Now().UnixNano()
	c.set(newEntry(id, e.Body, e.FreshUntil, addSat(now, keep)), now)
}
