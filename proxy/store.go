package proxy

import (
	"context"
	"time"

	"github.com/bluetape/bluetape-gateway/proxy/cache"
	"github.com/bluetape/bluetape-gateway/proxy/ratelimit"
)

// AnswerCache is where answers are kept by id: the in-process cache
// (LocalCache), or the same with a shared second level. Implementations
// must be safe for concurrent use, and must degrade rather than fail: a
// shared store that cannot be reached behaves as a miss.
type AnswerCache interface {
	// Get looks id up; a Fresh or Stale state comes with its entry.
	Get(ctx context.Context, id string) (*cache.Entry, cache.State)
	// SetFound caches a successful answer's encoded body.
	SetFound(ctx context.Context, id string, body []byte)
	// SetNotFound remembers an upstream 404, replacing any entry.
	SetNotFound(ctx context.Context, id string)
	// Delete drops id and reports whether it was cached.
	Delete(ctx context.Context, id string) bool
}

// Limiter takes a token from key's bucket under a policy: the per-caller
// limits and the gateway-wide upstream quota. Implementations must be safe
// for concurrent use and must not fail: a shared store that cannot be
// reached falls back to a local decision.
type Limiter interface {
	Allow(ctx context.Context, key string, p ratelimit.Policy) ratelimit.Decision
}

// Locker elects, across replicas, the one that calls the upstream for an
// id while the others wait for its answer in the shared cache.
type Locker interface {
	// TryLock takes id's lock for at most ttl. It returns the function
	// that releases it, or nil when another replica holds the lock. An
	// error means the election cannot be held; the caller then goes ahead
	// on its own.
	TryLock(ctx context.Context, id string, ttl time.Duration) (unlock func(), err error)
	// Wait returns once id's lock, held by another replica, may be
	// taken: released by its holder or expired. It returns ctx's error if
	// ctx ends first.
	Wait(ctx context.Context, id string) error
}

// LocalCache adapts the in-process cache to AnswerCache.
func LocalCache(c *cache.Cache) AnswerCache { return localCache{c} }

type localCache struct{ c *cache.Cache }

func (l localCache) Get(_ context.Context, id string) (*cache.Entry, cache.State) {
	return l.c.Get(id)
}
func (l localCache) SetFound(_ context.Context, id string, body []byte) { l.c.SetFound(id, body) }
func (l localCache) SetNotFound(_ context.Context, id string)           { l.c.SetNotFound(id) }
func (l localCache) Delete(_ context.Context, id string) bool           { return l.c.Delete(id) }

// LocalLimiter adapts the in-process bucket store to Limiter.
func LocalLimiter(s *ratelimit.Store) Limiter { return localLimiter{s} }

type localLimiter struct{ s *ratelimit.Store }

func (l localLimiter) Allow(_ context.Context, key string, p ratelimit.Policy) ratelimit.Decision {
	return l.s.Allow(key, p)
}

var (
	_ AnswerCache = localCache{}
	_ Limiter     = localLimiter{}
)
