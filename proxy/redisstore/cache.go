package redisstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bluetape/bluetape-gateway/metrics"
	"github.com/bluetape/bluetape-gateway/proxy/bluetape"
	"github.com/bluetape/bluetape-gateway/proxy/cache"
)

// evictChannel carries the ids evicted by an operator, so that every
// replica drops them from its first level.
const evictChannel = keyPrefix + "evict"

func cacheKey(id string) string { return keyPrefix + "cache:" + id }

// TwoLevelCache is a two-level answer cache: the replica's own cache in front of
// Redis. A lookup that misses the first level reads Redis and fills the
// first level with what it found, for what is left of the entry's
// freshness but at most L1TTL. Writes go to both levels. While Redis does
// not answer, the first level alone behaves as the local cache does.
//
// What Redis holds is not trusted: anything may write there. An entry
// read back is checked as an upstream answer is, and a bad one is a miss,
// counted, logged (without its value) and dropped from Redis.
type TwoLevelCache struct {
	conn        *conn
	l1          *cache.Cache
	opts        cache.Options // the windows and clock of l1, which Redis follows too
	l1TTL       time.Duration
	log         *slog.Logger
	shared      *metrics.Shared
	credentials func() (key, account string)
}

// Get looks id up in the first level, then in Redis.
func (c *TwoLevelCache) Get(ctx context.Context, id string) (*cache.Entry, cache.State) {
	e, state := c.l1.Get(id)
	if state == cache.Fresh {
		return e, state
	}
	var raw []byte
	var found bool
	if !c.conn.do(ctx, func(ctx context.Context, rdb redis.UniversalClient) error {
		var err error
		raw, err = rdb.Get(ctx, cacheKey(id)).Bytes()
		found = err == nil
		return err
	}) || !found {
		// Nothing in Redis: the first level may still hold a stale
		// answer worth serving if the upstream fails.
		return e, state
	}
	shared, err := c.check(raw)
	if err != nil {
		c.refuse(ctx, id, raw, err)
		return e, state
	}
	now := c.opts.Now()
	sharedState := c.l1.StateAt(&shared, now)
	if sharedState == cache.Miss {
		return e, state
	}
	if sharedState == cache.Fresh || state == cache.Miss {
		c.fill(id, shared, now)
	}
	return &shared, sharedState
}

// fill copies e, found in Redis, into the first level: fresh for at most
// L1TTL, kept for as long as Redis keeps it.
func (c *TwoLevelCache) fill(id string, e cache.Entry, now time.Time) {
	end := e.FreshUntil
	if !e.Negative() {
		end += int64(c.opts.StaleTTL)
	}
	e.FreshUntil = min(e.FreshUntil, now.Add(c.l1TTL).UnixNano())
	c.l1.SetEntry(id, e, time.Duration(end-now.UnixNano()))
}

// SetFound caches a successful answer in both levels. If Redis does not
// take it, the first level keeps it for the full TTL, as the local cache
// would.
func (c *TwoLevelCache) SetFound(ctx context.Context, id string, body []byte) {
	now := c.opts.Now()
	e := cache.Entry{Body: body, FreshUntil: now.Add(c.opts.TTL).UnixNano()}
	if c.set(ctx, id, e, c.opts.TTL+c.opts.StaleTTL) {
		c.fill(id, e, now)
		return
	}
	c.l1.SetFound(id, body)
}

// SetNotFound remembers an upstream 404 in both levels, replacing any
// entry; with negative caching off it drops id from both.
func (c *TwoLevelCache) SetNotFound(ctx context.Context, id string) {
	if c.opts.NegativeTTL <= 0 {
		c.l1.Delete(id)
		c.conn.do(ctx, func(ctx context.Context, rdb redis.UniversalClient) error { return rdb.Del(ctx, cacheKey(id)).Err() })
		return
	}
	now := c.opts.Now()
	e := cache.Entry{FreshUntil: now.Add(c.opts.NegativeTTL).UnixNano()}
	if c.set(ctx, id, e, c.opts.NegativeTTL) {
		c.fill(id, e, now)
		return
	}
	c.l1.SetNotFound(id)
}

func (c *TwoLevelCache) set(ctx context.Context, id string, e cache.Entry, keep time.Duration) bool {
	if keep < time.Millisecond {
		return false
	}
	return c.conn.do(ctx, func(ctx context.Context, rdb redis.UniversalClient) error {
		return rdb.Set(ctx, cacheKey(id), encodeEntry(e), keep).Err()
	})
}

// Delete drops id from both levels and tells the other replicas to drop
// it from theirs. It reports whether either level held it. If Redis does
// not answer, only this replica's first level is cleared, and a warning
// says so.
func (c *TwoLevelCache) Delete(ctx context.Context, id string) bool {
	inL1 := c.l1.Delete(id)
	var del *redis.IntCmd
	if !c.conn.do(ctx, func(ctx context.Context, rdb redis.UniversalClient) error {
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			del = p.Del(ctx, cacheKey(id))
			p.Publish(ctx, evictChannel, id)
			return nil
		})
		return err
	}) {
		c.log.Warn("evicting from Redis failed: other replicas may serve the entry until it expires", "customer_id", id)
		return inL1
	}
	return inL1 || del.Val() > 0
}

// errUnreadable is the check's answer for a value that is no entry of
// this version.
var errUnreadable = errors.New("not an entry of this version")

// check decodes raw and checks its answer as the upstream's is checked:
// exactly one signUpUrl, an absolute http(s) URL without user
// information, not too long, holding no credential in force. The body
// returned is re-encoded from the URL alone. Its errors never quote raw.
func (c *TwoLevelCache) check(raw []byte) (cache.Entry, error) {
	e, ok := decodeEntry(raw)
	if !ok {
		return cache.Entry{}, errUnreadable
	}
	if e.Negative() {
		return e, nil
	}
	var secrets []string
	if c.credentials != nil {
		key, account := c.credentials()
		secrets = []string{key, account}
	}
	u, err := bluetape.DecodeSignup(e.Body, secrets...)
	if err != nil {
		return cache.Entry{}, err
	}
	e.Body, err = json.Marshal(signup{u})
	return e, err
}

// signup is the gateway's answer body.
type signup struct {
	SignUpURL string `json:"signUpUrl"`
}

// refuse counts and logs an invalid entry read back for id, then drops
// it from Redis unless it changed meanwhile, so that it is reported once.
func (c *TwoLevelCache) refuse(ctx context.Context, id string, raw []byte, err error) {
	if c.shared != nil {
		c.shared.InvalidEntry()
	}
	c.log.Warn("an entry read back from Redis is invalid; taking it as a miss and dropping it",
		"customer_id", id, "error", err)
	c.conn.do(ctx, func(ctx context.Context, rdb redis.UniversalClient) error {
		return dropScript.Run(ctx, rdb, []string{cacheKey(id)}, raw).Err()
	})
}

// dropScript deletes KEYS[1] if it still holds ARGV[1].
var dropScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0
`)

// Entry encoding, version 1:
//
//	byte 0     format version (1)
//	byte 1     kind: 'F' a successful answer, 'N' an upstream 404
//	bytes 2-9  FreshUntil, Unix nanoseconds, big-endian
//	bytes 10-  the encoded answer body ('F' only, not empty)
const (
	entryVersion  = 1
	kindFound     = 'F'
	kindNotFound  = 'N'
	entryHeadSize = 10
)

func encodeEntry(e cache.Entry) []byte {
	b := make([]byte, entryHeadSize, entryHeadSize+len(e.Body))
	b[0] = entryVersion
	b[1] = kindFound
	if e.Negative() {
		b[1] = kindNotFound
	}
	binary.BigEndian.PutUint64(b[2:], uint64(e.FreshUntil))
	return append(b, e.Body...)
}

// decodeEntry reads an encoded entry; anything else is not ok, and is
// then taken as a miss.
func decodeEntry(b []byte) (cache.Entry, bool) {
	if len(b) < entryHeadSize || b[0] != entryVersion {
		return cache.Entry{}, false
	}
	e := cache.Entry{FreshUntil: int64(binary.BigEndian.Uint64(b[2:]))}
	body := b[entryHeadSize:]
	switch {
	case b[1] == kindFound && len(body) > 0:
		e.Body = body
	case b[1] == kindNotFound && len(body) == 0:
	default:
		return cache.Entry{}, false
	}
	return e, true
}
