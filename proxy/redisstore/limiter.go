package redisstore

import (
	"context"
	"encoding/hex"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bluetape/bluetape-gateway/proxy/ratelimit"
)

// rateKey is a bucket's key. Bucket keys are caller names, client
// addresses or the upstream quota's "\x00upstream"; hex keeps any of them
// a plain key.
func rateKey(key string) string { return keyPrefix + "rate:" + hex.EncodeToString([]byte(key)) }

// gcra takes one token from the bucket at KEYS[1] under the generic cell
// rate algorithm, atomically and on Redis's clock, so that all replicas
// agree. The key holds the bucket's theoretical arrival time (TAT) in
// microseconds; it expires when the bucket is full again. ARGV: rate (per
// second), burst. It returns {allowed 0|1, remaining, retry after µs,
// reset µs}.
var gcra = redis.NewScript(`
redis.replicate_commands()
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call("TIME")
local now = (tonumber(t[1]) - 1700000000) * 1000000 + tonumber(t[2])
local interval = 1000000 / rate
local tat = tonumber(redis.call("GET", KEYS[1]) or "")
if tat == nil or tat < now then
  tat = now
end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if now < allow_at then
  return {0, 0, math.ceil(allow_at - now), math.ceil(tat - now)}
end
local reset = new_tat - now
redis.call("SET", KEYS[1], string.format("%.0f", new_tat), "PX", math.max(1, math.ceil(reset / 1000)))
return {1, math.floor((now - allow_at) / interval), 0, math.ceil(reset)}
`)

// Buckets keeps token buckets in Redis, shared by all replicas: a caller's
// limit holds across the fleet, and so does the upstream quota. While
// Redis does not answer, each replica decides from its own buckets, so a
// caller may then get up to its limit from every replica.
type Buckets struct {
	conn  *conn
	local *ratelimit.Store
}

// Allow takes one token from key's bucket under p.
func (l *Buckets) Allow(ctx context.Context, key string, p ratelimit.Policy) ratelimit.Decision {
	if p.Unlimited() {
		return l.local.Allow(key, p)
	}
	var r []int64
	if l.conn.do(ctx, func(ctx context.Context, rdb redis.UniversalClient) error {
		var err error
		r, err = gcra.Run(ctx, rdb, []string{rateKey(key)}, p.Rate, p.Burst).Int64Slice()
		return err
	}) && len(r) == 4 {
		return ratelimit.Decision{
			Allowed:    r[0] == 1,
			Remaining:  int(r[1]),
			RetryAfter: time.Duration(r[2]) * time.Microsecond,
			Reset:      time.Duration(r[3]) * time.Microsecond,
		}
	}
	return l.local.Allow(key, p)
}
