// Package ratelimit keeps one token bucket per caller, in memory, with a
// hard bound on how many buckets it holds.
package ratelimit

import (
	"context"
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
	return time.Duration(float64(p.Burst) / p.Rate * float64(time.Second))
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
	// IdleAfter is how long a bucket may go unused before it may be
	// dropped: a dropped bucket comes back full, so it must be at least
	// the time a bucket takes to fill. By default 5 minutes.
	IdleAfter time.Duration
	// Now is the clock; by default time.Now.
	Now func() time.Time
}

const shards = 32

// Store holds token buckets by key (a caller's name or client address).
// It is safe for concurrent use. Memory is bounded: idle buckets are swept,
// and when a shard is full a new key first sweeps the shard and then, if
// it is still full of active buckets, replaces an arbitrary one; the
// replaced key starts again with a full bucket, which bounds the harm a
// flood of distinct keys can do to the gateway's memory.
type Store struct {
	opts     Options
	perShard int
	seed     maphash.Seed
	shards   [shards]shard
}

type shard struct {
	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	lim    *rate.Limiter
	policy Policy
	last   int64 // unix nanos of the last use
}

// New returns an empty store.
func New(o Options) *Store {
	if o.MaxKeys <= 0 {
		o.MaxKeys = 100000
	}
	if o.IdleAfter <= 0 {
		o.IdleAfter = 5 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Store{opts: o, perShard: max(1, o.MaxKeys/shards), seed: maphash.MakeSeed()}
	for i := range s.shards {
		s.shards[i].buckets = make(map[string]*bucket)
	}
	return s
}

// Allow takes one token from key's bucket under policy p.
func (s *Store) Allow(key string, p Policy) Decision {
	if p.Unlimited() {
		return Decision{Allowed: true, Remaining: math.MaxInt32}
	}
	now := s.opts.Now()
	sh := &s.shards[maphash.String(s.seed, key)%shards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b := sh.buckets[key]
	if b == nil {
		if len(sh.buckets) >= s.perShard {
			s.makeRoom(sh, now)
		}
		b = &bucket{lim: rate.NewLimiter(rate.Limit(p.Rate), p.Burst), policy: p}
		sh.buckets[key] = b
	} else if b.policy != p {
		b.lim.SetLimitAt(now, rate.Limit(p.Rate))
		b.lim.SetBurstAt(now, p.Burst)
		b.policy = p
	}
	b.last = now.UnixNano()
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
	return d
}

func seconds(s float64) time.Duration {
	if s <= 0 {
		return 0
	}
	return time.Duration(s * float64(time.Second))
}

// makeRoom drops the shard's idle buckets, or one arbitrary bucket when
// none is idle. The caller holds sh.mu.
func (s *Store) makeRoom(sh *shard, now time.Time) {
	cutoff := now.Add(-s.opts.IdleAfter).UnixNano()
	for k, b := range sh.buckets {
		if b.last < cutoff {
			delete(sh.buckets, k)
		}
	}
	if len(sh.buckets) < s.perShard {
		return
	}
	for k := range sh.buckets {
		delete(sh.buckets, k)
		return
	}
}

// Sweep drops every bucket idle for longer than IdleAfter.
func (s *Store) Sweep() {
	cutoff := s.opts.Now().Add(-s.opts.IdleAfter).UnixNano()
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for k, b := range sh.buckets {
			if b.last < cutoff {
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

// Run sweeps idle buckets every interval until ctx is done.
func (s *Store) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.Sweep()
		}
	}
}
