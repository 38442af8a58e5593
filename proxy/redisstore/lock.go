package redisstore

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

func lockKey(id string) string { return keyPrefix + "lock:" + id }

// unlockScript deletes KEYS[1] only if it still holds ARGV[1], the
// holder's token: a holder whose lock expired and was taken by another
// replica must not release the new holder's lock. Then it publishes
// ARGV[3], the id, on ARGV[2], the release channel, so that the replicas
// waiting for the lock look at once.
var unlockScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
  redis.call("DEL", KEYS[1])
  redis.call("PUBLISH", ARGV[2], ARGV[3])
  return 1
end
return 0
`)

// relockScript takes KEYS[1] for ARGV[1], the token, for ARGV[2] ms,
// unless another token holds it; it answers 1 if the token holds it. It
// is SET NX made safe to try again after an attempt whose answer was
// lost: that attempt may have taken the lock.
var relockScript = redis.NewScript(`
local v = redis.call("GET", KEYS[1])
if v == ARGV[1] then
  return 1
end
if v then
  return 0
end
redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
return 1
`)

// errUnavailable is TryLock's answer while Redis does not answer.
var errUnavailable = errors.New("redis unavailable")

// Election elects, among replicas, the one that calls the upstream for an
// id: a Redis key taken with SET NX PX and a random token, which expires
// by itself if its holder dies. The others Wait for the holder to release
// it.
type Election struct {
	conn  *conn
	waits *waiters
}

// TryLock takes id's lock for at most ttl. It returns the function that
// releases it, nil if another replica holds it, or an error if Redis does
// not answer (the caller then goes ahead on its own). Releasing wakes the
// replicas that Wait for the lock.
func (l *Election) TryLock(ctx context.Context, id string, ttl time.Duration) (func(), error) {
	key, token := lockKey(id), newToken()
	ttl = max(ttl, time.Millisecond)
	var won bool
	ok, late := l.conn.run(ctx, func(ctx context.Context, rdb redis.UniversalClient) error {
		var err error
		won, err = rdb.SetNX(ctx, key, token, ttl).Result()
		return err
	})
	if !ok && late {
		// Redis is there: try again rather than call the upstream
		// beside the replica that holds the lock.
		ok, _ = l.conn.run(ctx, func(ctx context.Context, rdb redis.UniversalClient) error {
			n, err := relockScript.Run(ctx, rdb, []string{key}, token, ttl.Milliseconds()).Int()
			won = n == 1
			return err
		})
	}
	if !ok {
		return nil, errUnavailable
	}
	if !won {
		return nil, nil
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			// Run when the holder's own context is over; a failure
			// leaves the lock to expire.
			unlock := func(ctx context.Context, rdb redis.UniversalClient) error {
				return unlockScript.Run(ctx, rdb, []string{key}, token, releaseChannel, id).Err()
			}
			// Releasing twice is harmless, so a late attempt is tried
			// again: the waiters would otherwise wait for the expiry.
			if ok, late := l.conn.run(context.Background(), unlock); !ok && late {
				l.conn.run(context.Background(), unlock)
			}
		})
	}, nil
}

// newToken returns 128 random bits, in base 36.
func newToken() string {
	return strconv.FormatUint(rand.Uint64(), 36) + "." + strconv.FormatUint(rand.Uint64(), 36)
}
