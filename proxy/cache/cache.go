// Package cache holds the gateway's answers by customer id: successful
// answers for a TTL and then, while the upstream fails, for a stale window;
// upstream 404s for a shorter negative TTL. It wraps go-cache with what
// go-cache lacks: a hard bound on the number of entries, an eviction order,
// and expiry on an injectable clock.
package cache

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	gocache "github.com/patrickmn/go-cache"
)

// Entry is one cached answer. The cache never changes what a caller can
// see of an entry once it is stored: a new answer for the same id is a
// new Entry.
type Entry struct {
	// Body is the encoded 200 answer, ready to be written as is; nil for
	// a negative entry, which records that the upstream answered 404.
	Body []byte
	// FreshUntil is when the entry stops being fresh, in Unix nanoseconds.
	FreshUntil int64

	// The entry's place in the eviction order of its kind, guarded by
	// Cache.mu: its neighbours, older first. The links are nil once it
	// left the cache.
	prev, next *Entry
	// keepUntil is when the entry may no longer be served at all, in Unix
	// nanoseconds: the end of its stale window, or of its TTL for a
	// negative entry, unless SetEntry set it shorter.
	keepUntil int64
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
	// MaxEntries bounds the number of ids held. When the cache is full, a
	// new id first takes the place of an entry past all its windows, then
	// of the oldest negative entry, and only when there is none of the
	// oldest successful one. Below 1 it is taken as 1.
	MaxEntries int
	// Now is the clock; by default time.Now.
	Now func() time.Time
}

// Cache is a bounded cache of answers by id. It is safe for concurrent use.
// Lookups take only go-cache's read lock and allocate nothing; writes are
// serialised by a mutex that also guards the eviction order.
//
// Every entry is in go-cache's map and in one of two lists, negative and
// successful entries, each ordered by the time of writing. As entries of a
// kind live equally long (but for SetEntry's, which may live shorter), a
// list's oldest entry is also the first to expire: expired entries are
// swept from the lists' heads as writes come, and eviction takes a head,
// both without scanning the map.
type Cache struct {
	// items is go-cache's map of the entries. Lookups read it without
	// mu; writes, and the swap of a compacted map, hold mu.
	items atomic.Pointer[gocache.Cache]
	opts  Options

	mu       sync.Mutex
	positive list
	negative list
	// removed counts the entries dropped from items since it was last
	// built; see compact.
	removed int
}

// New returns an empty cache.
func New(o Options) *Cache {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxEntries < 1 {
		o.MaxEntries = 1
	}
	// Entries never expire in go-cache's eyes: its clock is the wall
	// clock, and its janitor scans the whole map under the write lock.
	// Expiry follows opts.Now, in Get and in sweep.
	c := &Cache{opts: o}
	c.items.Store(gocache.New(gocache.NoExpiration, 0))
	return c
}

// Get looks id up. A Fresh or Stale state comes with its entry.
func (c *Cache) Get(id string) (*Entry, State) {
	v, ok := c.items.Load().Get(id)
	if !ok {
		return nil, Miss
	}
	e := v.(*Entry)
	now := c.opts.Now()
	if now.UnixNano() >= e.keepUntil {
		return nil, Miss
	}
	state := c.StateAt(e, now)
	if state == Miss {
		return nil, Miss
	}
	return e, state
}

// StateAt is the freshness rule, the one every level of cache follows: a
// successful answer is Fresh until e.FreshUntil, then Stale for StaleTTL;
// a negative entry is only ever Fresh.
func (c *Cache) StateAt(e *Entry, now time.Time) State {
	n := now.UnixNano()
	switch {
	case n < e.FreshUntil:
		return Fresh
	case !e.Negative() && n < addSat(e.FreshUntil, c.opts.StaleTTL):
		return Stale
	default:
		return Miss
	}
}

// Options returns the cache's options, its windows and clock included, so
// that a level in front of another one follows the same.
func (c *Cache) Options() Options { return c.opts }

// SetFound caches a successful answer for id; body is copied.
func (c *Cache) SetFound(id string, body []byte) {
	if body == nil {
		body = []byte{} // nil marks a negative entry
	}
	now := c.opts.Now()
	fresh := now.Add(c.opts.TTL).UnixNano()
	c.set(newEntry(id, body, fresh, addSat(fresh, c.opts.StaleTTL)), now.UnixNano())
}

// SetNotFound remembers that the upstream answered 404 for id, replacing
// any successful entry. When negative caching is off it still drops a
// successful entry: the upstream said the id is gone.
func (c *Cache) SetNotFound(id string) {
	if c.opts.NegativeTTL <= 0 {
		c.Delete(id)
		return
	}
	now := c.opts.Now()
	fresh := now.Add(c.opts.NegativeTTL).UnixNano()
	c.set(newEntry(id, nil, fresh, fresh), now.UnixNano())
}

// addSat returns t+d, saturated at the largest time.
func addSat(t int64, d time.Duration) int64 {
	if d <= 0 {
		return t
	}
	if t > math.MaxInt64-int64(d) {
		return math.MaxInt64
	}
	return t + int64(d)
}

// set stores e under its key, whose bytes e holds: the id usually points
// into the request's URL, and a copy keeps that buffer from living as
// long as the entry. A nil e, an id too long to hold, stores nothing.
func (c *Cache) set(e *Entry, now int64) {
	if e == nil {
		return
	}
	key := e.key()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweep(now)
	items := c.items.Load()
	if v, ok := items.Get(key); ok {
		// A new answer for a held id goes to the back of its kind's
		// order; the map's key becomes the new entry's.
		old := v.(*Entry)
		c.listOf(old).remove(old)
	} else if c.positive.n+c.negative.n >= c.opts.MaxEntries {
		c.evictOldest()
	}
	c.listOf(e).pushBack(e)
	items.Set(key, e, gocache.NoExpiration)
	c.compact()
}

// compact rebuilds go-cache's map once a quarter as many entries were
// dropped from it as it holds. A Go map never shrinks, and one whose
// entries are replaced one by one fills with deleted slots and doubles
// to make room: at its bound, with each new id evicting the oldest,
// 100,000 entries came to take about 130 bytes of map each instead of
// about 60, within half of one turnover (TestEntryMemory). The copy is
// sized to what it holds. Lookups go on in the old map meanwhile; c.mu
// holds the writes back for the copy (about 10 ms for 100,000 entries).
// Each removal pays a constant share of it: four map insertions.
func (c *Cache) compact() {
	n := c.positive.n + c.negative.n
	if c.removed < max(n/4, compactMin) {
		return
	}
	m := make(map[string]gocache.Item, n)
	for _, l := range [...]*list{&c.negative, &c.positive} {
		for e := l.head; e != nil; e = e.next {
			m[e.key()] = gocache.Item{Object: e}
		}
	}
	c.items.Store(gocache.NewFrom(gocache.NoExpiration, 0, m))
	c.removed = 0
}

// compactMin is the fewest removals that make a rebuild worth it.
const compactMin = 1024

func (c *Cache) listOf(e *Entry) *list {
	if e.Negative() {
		return &c.negative
	}
	return &c.positive
}

// evictOldest drops the oldest negative entry, or when there is none the
// oldest successful one.
func (c *Cache) evictOldest() {
	l := &c.negative
	if l.head == nil {
		l = &c.positive
	}
	if e := l.head; e != nil {
		l.remove(e)
		c.items.Load().Delete(e.key())
		c.removed++
	}
}

// sweep drops the entries that can no longer be served at now. It stops at
// each list's first live entry; should the clock step back, later entries
// may wait for it, and still count against the bound.
func (c *Cache) sweep(now int64) {
	for _, l := range [...]*list{&c.negative, &c.positive} {
		for e := l.head; e != nil && now >= e.keepUntil; e = l.head {
			l.remove(e)
			c.items.Load().Delete(e.key())
			c.removed++
		}
	}
}

// Delete drops id and reports whether it was cached: fresh, negative, or
// within its stale window.
func (c *Cache) Delete(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	items := c.items.Load()
	v, ok := items.Get(id)
	if !ok {
		return false
	}
	e := v.(*Entry)
	c.listOf(e).remove(e)
	items.Delete(id)
	c.removed++
	return c.opts.Now().UnixNano() < e.keepUntil
}

// Purge drops every entry.
func (c *Cache) Purge() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range [...]*list{&c.negative, &c.positive} {
		for l.head != nil {
			l.remove(l.head)
		}
	}
	c.items.Load().Flush()
	c.removed = 0
}

// Len returns the number of ids held that can still be served, fresh,
// negative or stale. It first drops the others.
func (c *Cache) Len() int {
	now := c.opts.Now().UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweep(now)
	return c.positive.n + c.negative.n
}

// Sweep drops expired entries, so that their memory is freed even when
// no write comes; main calls it every minute.
func (c *Cache) Sweep() {
	now := c.opts.Now().UnixNano()
	c.mu.Lock()
	c.sweep(now)
	c.mu.Unlock()
}

// list is a doubly linked list of entries, oldest at head.
type list struct {
	head, tail *Entry
	n          int
}

func (l *list) pushBack(e *Entry) {
	e.prev, e.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = e
	} else {
		l.head = e
	}
	l.tail = e
	l.n++
}

// remove unlinks e, which must be in l. It clears e's links, so that an
// entry a caller still holds keeps no other entry alive.
func (l *list) remove(e *Entry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		l.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		l.tail = e.prev
	}
	e.prev, e.next = nil, nil
	l.n--
}
