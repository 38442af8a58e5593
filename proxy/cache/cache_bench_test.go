package cache

import (
	"encoding/binary"
	"encoding/hex"
	"runtime"
	"testing"
	"time"
)

// signupPrefix is BlueTape's signup URL without its id.
const signupPrefix = "https://www.bluetape.com/signup?id="

// hexID returns the 16 hex characters of n, the shape of a BlueTape id.
func hexID(n uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], n*0x9e3779b97f4a7c15)
	return hex.EncodeToString(b[:])
}

// signupBody is the gateway's encoded answer for a signup id, sized
// exactly as the gateway builds it.
func signupBody(signupID string) []byte {
	const head, tail = `{"signUpUrl":"`, `"}`
	b := make([]byte, 0, len(head)+len(signupPrefix)+len(signupID)+len(tail))
	b = append(b, head...)
	b = append(b, signupPrefix...)
	b = append(b, signupID...)
	return append(b, tail...)
}

func benchCache(max int) *Cache {
	return New(Options{TTL: 15 * time.Minute, NegativeTTL: 30 * time.Second, StaleTTL: 24 * time.Hour, MaxEntries: max})
}

// benchFilled returns a cache holding 1024 answers and their ids.
func benchFilled() (*Cache, []string) {
	c := benchCache(1024)
	ids := make([]string, 1024)
	for i := range ids {
		ids[i] = hexID(uint64(i))
		c.SetFound(ids[i], signupBody(hexID(uint64(i)+1<<32)))
	}
	return c, ids
}

func BenchmarkGetHit(b *testing.B) {
	c, ids := benchFilled()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, st := c.Get(ids[i&1023]); st != Fresh {
			b.Fatal("miss")
		}
	}
}

func BenchmarkGetHitParallel(b *testing.B) {
	c, ids := benchFilled()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, st := c.Get(ids[i&1023]); st != Fresh {
				b.Fatal("miss")
			}
			i++
		}
	})
}

// BenchmarkSetFound inserts distinct ids into a full cache, so that every
// insert evicts the oldest entry.
func BenchmarkSetFound(b *testing.B) {
	const max = 10000
	c := benchCache(max)
	for i := 0; i < max; i++ {
		c.SetFound(hexID(uint64(i)), signupBody(hexID(uint64(i))))
	}
	ids := make([]string, 1<<16)
	for i := range ids {
		ids[i] = hexID(uint64(max + i))
	}
	body := signupBody(hexID(1))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// The ids repeat every 65536 inserts, long after the cache
		// (10000 entries) has evicted them: each insert is a new id.
		c.SetFound(ids[i&(1<<16-1)], body)
	}
	if c.Len() > max {
		b.Fatalf("Len() = %d; want at most %d", c.Len(), max)
	}
}

// BenchmarkEntryBytes fills a cache with 100k successful answers of
// realistic size and reports the heap bytes each costs (B/entry), and
// that cost as a multiple of the entry's key and URL bytes (x-key+url),
// which the aim puts at 2.
func BenchmarkEntryBytes(b *testing.B) {
	const n = 100_000
	keyURL := float64(16 + len(signupPrefix) + 16)
	var perEntry float64
	for i := 0; i < b.N; i++ {
		perEntry = heapPerEntry(n, 0)
	}
	b.ReportMetric(perEntry, "B/entry")
	b.ReportMetric(perEntry/keyURL, "x-key+url")
	b.ReportMetric(0, "ns/op")
}

// heapPerEntry builds a cache, fills it with n entries and returns the
// heap bytes held per entry, the cache's own structures included: ids
// built per request and then cloned, bodies allocated as the gateway
// encodes them.
//
// churn more new ids then replace the oldest ones, as a cache at its bound
// lives: each evicts one entry.
func heapPerEntry(n, churn int) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := benchCache(n)
	for i := 0; i < n+churn; i++ {
		c.SetFound(hexID(uint64(i)), signupBody(hexID(uint64(i)+1<<40)))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if c.Len() != n {
		panic("cache did not keep every entry")
	}
	runtime.KeepAlive(c)
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
}
