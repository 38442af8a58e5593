// Package cache holds the gateway's answers by customer id: successful
// answers for a TTL and then, while the upstream fails, for a stale window;
// upstream 404s for a shorter negative TTL. It wraps go-cache with the one
// thing go-cache lacks, a hard bound on the number of entries.
package cache

import (
	"context"
	"strings"
	"sync"
	"time"

	gocache "github.com/patrickmn/go-cache"
)

// Entry is one cached answer.
type Entry struct {
	// Body is the encoded 200 answer, ready to be written as is; nil for
	// a negative entry, which records that the upstream answered 404.
	Body []byte
	// FreshUntil is when the entry stops being fresh, in Unix nanoseconds.
	FreshUntil int64
}

// Negative reports whether e records an upstream 404.
func (e *Entry) Negative() bool { return e.Body == nil }

// State is what a lookup found.
type State uint8

const (
	// Miss: nothing usable is cached.
	Miss State = iota
	// Fresh: the entry is within its TTL.
	Fresh
	// Stale: a successful answer past its TTL but within the stale
	// window; it may be served only when the upstream fails.
	Stale
)

// Options configures a Cache.
type Options struct {
	// TTL is how long a successful answer is fresh.
	TTL time.Duration
	// NegativeTTL is how long an upstream 404 is remembered; zero
	// disables negative caching.
	NegativeTTL time.Duration
	// StaleTTL is how long after TTL a successful answer is kept for
	// serving while the upstream fails; zero disables it.
	StaleTTL time.Duration
	// MaxEntries bounds the number of ids held. When the cache is full,
	// a new id first evicts the oldest negative entry, and only when
	// there is none the oldest successful one.
	MaxEntries int
	// Now is the clock; by default time.Now.
	Now func() time.Time
}

// Cache is a bounded cache of answers by id. It is safe for concurrent use.
// Lookups take only go-cache's read lock and allocate nothing; inserts are
// serialised by a mutex that also guards the eviction order.
type Cache struct {
	items *gocache.Cache
	opts  Options

	mu       sync.Mutex
	positive keyQueue // insertion order of successful entries
	negative keyQueue // insertion order of negative entries
}

// New returns an empty cache. MaxEntries below 1 is taken as 1.
func New(o Options) *Cache {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxEntries < 1 {
		o.MaxEntries = 1
	}
	// No go-cache janitor: its goroutine is stopped only by a finalizer.
	// Run sweeps expired entries for as long as its context lives.
	return &Cache{items: gocache.New(gocache.NoExpiration, 0), opts: o}
}

// Get looks id up. A Fresh or Stale state comes with its entry.
func (c *Cache) Get(id string) (*Entry, State) {
	v, ok := c.items.Get(id)
	if !ok {
		return nil, Miss
	}
	e := v.(*Entry)
	now := c.opts.Now().UnixNano()
	switch {
	case now < e.FreshUntil:
		return e, Fresh
	case !e.Negative() && now < e.FreshUntil+int64(c.opts.StaleTTL):
		return e, Stale
	default:
		return nil, Miss
	}
}

// SetFound caches a successful answer for id; body is kept, not copied.
func (c *Cache) SetFound(id string, body []byte) {
	c.set(id, &Entry{Body: body, FreshUntil: c.opts.Now().Add(c.opts.TTL).UnixNano()},
		c.opts.TTL+c.opts.StaleTTL)
}

// SetNotFound remembers that the upstream answered 404 for id, replacing
// any successful entry. It does nothing when negative caching is off, but
// still drops a successful entry: the upstream said the id is gone.
func (c *Cache) SetNotFound(id string) {
	if c.opts.NegativeTTL <= 0 {
		c.Delete(id)
		return
	}
	c.set(id, &Entry{FreshUntil: c.opts.Now().Add(c.opts.NegativeTTL).UnixNano()}, c.opts.NegativeTTL)
}

func (c *Cache) set(id string, e *Entry, keep time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old, found := c.items.Get(id)
	sameKind := found && old.(*Entry).Negative() == e.Negative()
	if !sameKind {
		if !found {
			for c.items.ItemCount() >= c.opts.MaxEntries && c.evictOne() {
			}
			// The id usually points into the request's URL; a copy keeps
			// that buffer from living as long as the entry.
			id = strings.Clone(id)
		}
		if e.Negative() {
			c.negative.push(id)
		} else {
			c.positive.push(id)
		}
	}
	// go-cache's own expiry uses the wall clock; it only frees memory.
	// Whether an entry may be served is decided by Get with opts.Now.
	c.items.Set(id, e, keep)
	c.compact()
}

// evictOne drops the oldest negative entry, or failing that the oldest
// successful one. Queue slots whose id is gone or changed kind are skipped.
// It reports whether anything was dropped.
func (c *Cache) evictOne() bool {
	for _, q := range []*keyQueue{&c.negative, &c.positive} {
		wantNegative := q == &c.negative
		for q.len() > 0 {
			id := q.pop()
			if v, ok := c.items.Get(id); ok && v.(*Entry).Negative() == wantNegative {
				c.items.Delete(id)
				return true
			}
		}
	}
	// Entries past go-cache's expiry that the sweep has not removed yet
	// are counted but unreachable through the queues.
	before := c.items.ItemCount()
	c.items.DeleteExpired()
	return c.items.ItemCount() < before
}

// compact drops queue slots of ids no longer held, once a queue holds
// twice as many slots as the cache has room for, so churn below the bound
// cannot grow the queues.
func (c *Cache) compact() {
	for _, q := range []*keyQueue{&c.negative, &c.positive} {
		if q.len() <= 2*c.opts.MaxEntries {
			continue
		}
		wantNegative := q == &c.negative
		seen := make(map[string]struct{}, q.len()/2)
		q.filter(func(id string) bool {
			v, ok := c.items.Get(id)
			if !ok || v.(*Entry).Negative() != wantNegative {
				return false
			}
			if _, dup := seen[id]; dup {
				return false
			}
			seen[id] = struct{}{}
			return true
		})
	}
}

// Delete drops id and reports whether it was cached. Its queue slot stays
// until eviction or compaction skips it.
func (c *Cache) Delete(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, found := c.items.Get(id)
	c.items.Delete(id)
	return found
}

// Purge drops every entry.
func (c *Cache) Purge() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.items.Flush()
	c.positive = keyQueue{}
	c.negative = keyQueue{}
}

// Len returns the number of ids held, including expired ones not yet swept.
func (c *Cache) Len() int { return c.items.ItemCount() }

// Run removes expired entries every interval until ctx is done.
func (c *Cache) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.items.DeleteExpired()
		}
	}
}

// keyQueue is a FIFO of ids backed by one slice.
type keyQueue struct {
	ids  []string
	head int
}

func (q *keyQueue) len() int { return len(q.ids) - q.head }

func (q *keyQueue) push(id string) {
	if q.head > 0 && q.head >= len(q.ids)/2 {
		n := copy(q.ids, q.ids[q.head:])
		clear(q.ids[n:])
		q.ids, q.head = q.ids[:n], 0
	}
	q.ids = append(q.ids, id)
}

func (q *keyQueue) pop() string {
	id := q.ids[q.head]
	q.ids[q.head] = ""
	q.head++
	return id
}

func (q *keyQueue) filter(keep func(string) bool) {
	out := q.ids[:0]
	for _, id := range q.ids[q.head:] {
		if keep(id) {
			out = append(out, id)
		}
	}
	clear(q.ids[len(out):])
	q.ids, q.head = out, 0
}
