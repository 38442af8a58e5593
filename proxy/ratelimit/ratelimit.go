// Package ratelimit keeps one token bucket per caller, in memory, with a
// hard bound on how many buckets it holds.
package ratelimit

import (
	"hash/maphash"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Policy is a caller's quota: Rate requests per second, bursts of Burst.
// A Rate of zero means unlimited.
type Policy struct {
	Rate  float64
	Burst int
}

// Unlimited reports whether p lets everything through.
func (p Policy) Unlimited() bool { return p.Rate <= 0 }

// Window is the time an empty bucket takes to fill, which the
// RateLimit-Policy header announces as the quota's window.
func (p Policy) Window() time.Duration {
	if p.Unlimited() {
		return 0
	}
	return seconds(float64(p.Burst) / p.Rate)
}

// Decision is the outcome of one Allow.
type Decision struct {
	Allowed bool
	// Remaining is the whole tokens left after this request.
	Remaining int
	// RetryAfter is, when refused, how long until a token is available.
	RetryAfter time.Duration
	// Reset is how long until the bucket is full again.
	Reset time.Duration
}

// Options configures a Store.
type Options struct {
	// MaxKeys bounds the buckets held. By default 100,000.
	MaxKeys int
	// IdleAfter is how long a bucket must go unused before it may be
	// swept. A bucket is swept only once it is also full again, when
	// dropping it changes nothing: the key's next request starts a new,
	// full bucket. By default 1 minute.
	IdleAfter time.Duration
	// Now is the clock; by default time.Now.
	Now func() time.Time
}

// maxShards is how many independently locked parts a large store has.
const maxShards = 32

// evictSample is how many buckets a full shard looks at to choose the
// least recently used one to evict, as Redis approximates LRU.
const evictSample = 8

// sweepEvery is how often, at most, a full shard sweeps all its buckets
// to make room; between sweeps a new key evicts a sampled bucket. This
// keeps the cost of a new key small and constant under a flood.
const sweepEvery = time.Second

// Store holds token buckets by key (a caller's name or client address).
// It is safe for concurrent use.
//
// Memory is bounded by MaxKeys whatever keys arrive. Buckets that are idle
// and full again are swept. When a new key finds its shard full, the
// shard is swept (at most once a second); if it is still full of active
// buckets, the least recently used of a few sampled buckets is evicted,
// and that key starts again with a full bucket. A flood of distinct keys can therefore cost a
// well-behaved key its bucket's state, but never the gateway its memory.
type Store struct {
	opts   Options
	seed   maphash.Seed
	shards []shard
}

type shard struct {
	mu        sync.Mutex
	max       int
	buckets   map[string]*bucket
	lastSweep int64 // unix nanos of makeRoom's last full sweep
}

type bucket struct {
	lim    *rate.Limiter
	policy Policy
	last   int64 // unix nanos of the last use
	full   int64 // unix nanos when the bucket is full again
}

// New returns an empty store.
func New(o Options) *Store {
	if o.MaxKeys <= 0 {
		o.MaxKeys = 100000
	}
	if o.IdleAfter <= 0 {
		o.IdleAfter = time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	// The shards' capacities add up to exactly MaxKeys, and none is zero.
	n := min(maxShards, o.MaxKeys)
	s := &Store{opts: o, seed: maphash.MakeSeed(), shards: make([]shard, n)}
	for i := range s.shards {
		s.shards[i].max = o.MaxKeys / n
		if i < o.MaxKeys%n {
			s.shards[i].max++
		}
		s.shards[i].buckets = make(map[string]*bucket)
	}
	return s
}

// Allow takes one token from key's bucket under policy p. A key's policy
// may change between calls (a reloaded callers file); its bucket then
// keeps its tokens and takes the new rate and burst.
func (s *Store) Allow(key string, p Policy) Decision {
	if p.Unlimited() {
		return Decision{Allowed: true, Remaining: math.MaxInt32}
	}
	now := s.opts.Now()
	sh := &s.shards[maphash.String(s.seed, key)%uint64(len(s.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b := sh.buckets[key]
	if b == nil {
		if len(sh.buckets) >= sh.max {
			s.makeRoom(sh, now)
		}
		b = &bucket{lim: rate.NewLimiter(rate.Limit(p.Rate), p.Burst), policy: p}
		sh.buckets[key] = b
	} else if b.policy != p {
		b.lim.SetLimitAt(now, rate.Limit(p.Rate))
		b.lim.SetBurstAt(now, p.Burst)
		b.policy = p
	}
	allowed := b.lim.AllowN(now, 1)
	tokens := b.lim.TokensAt(now)
	d := Decision{
		Allowed:   allowed,
		Remaining: max(0, int(math.Floor(tokens))),
		Reset:     seconds((float64(p.Burst) - tokens) / p.Rate),
	}
	if !allowed {
		d.RetryAfter = seconds((1 - tokens) / p.Rate)
	}
	b.last = now.UnixNano()
	b.full = now.Add(d.Reset).UnixNano()
	return d
}

// seconds converts s seconds to a duration rounded up to the microsecond,
// ignoring the last bits of float error, so that 3.0000000000000004 s is
// 3 s and never rounds up to a whole extra second in a Retry-After.
func seconds(s float64) time.Duration {
	if s <= 0 || math.IsNaN(s) {
		return 0
	}
	us := math.Ceil(s*1e6 - 1e-3)
	if us >= math.MaxInt64/float64(time.Microsecond) {
		return math.MaxInt64
	}
	return time.Duration(us) * time.Microsecond
}

// sweepable reports whether b may be dropped at now: idle for at least
// IdleAfter, and full again.
func (s *Store) sweepable(b *bucket, now int64) bool {
	return now-b.last >= int64(s.opts.IdleAfter) && now >= b.full
}

// makeRoom sweeps the shard, at most once per sweepEvery, and, if it is
// still full, evicts the least recently used of a few sampled buckets.
// The caller holds sh.mu.
func (s *Store) makeRoom(sh *shard, now time.Time) {
	t := now.UnixNano()
	if t-sh.lastSweep >= int64(sweepEvery) || t < sh.lastSweep {
		sh.lastSweep = t
		for k, b := range sh.buckets {
			if s.sweepable(b, t) {
				delete(sh.buckets, k)
			}
		}
		if len(sh.buckets) < sh.max {
			return
		}
	}
	victim, oldest, seen := "", int64(math.MaxInt64), 0
	for k, b := range sh.buckets {
		if b.last < oldest {
			victim, oldest = k, b.last
		}
		if seen++; seen == evictSample {
			break
		}
	}
	delete(sh.buckets, victim)
}

// Sweep drops every bucket that is idle and full again.
func (s *Store) Sweep() {
	now := s.opts.Now().UnixNano()
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for k, b := range sh.buckets {
			if s.sweepable(b, now) {
				delete(sh.buckets, k)
			}
		}
		sh.mu.Unlock()
	}
}

// Len returns the number of buckets held.
func (s *Store) Len() int {
	n := 0
	for i := range s.shards {
		s.shards[i].mu.Lock()
		n += len(s.shards[i].buckets)
		s.shards[i].mu.Unlock()
	}
	return n
}
