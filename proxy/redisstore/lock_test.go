package redisstore

import (
	"testing"
	"time"

	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
	"github.com/bluetape/bluetape-gateway/proxy/redisstore/redistest"
)

func TestLockExclusive(t *testing.T) {
	a, b := twoReplicas(t)

	unlock, err := a.Locker().TryLock(ctx, "c1", time.Minute)
	if err != nil || unlock == nil {
		t.Fatalf("first TryLock: %v, %v; want the lock", unlock != nil, err)
	}
	if u, err := b.Locker().TryLock(ctx, "c1", time.Minute); u != nil || err != nil {
		t.Fatalf("second TryLock: %v, %v; want held elsewhere (nil, nil)", u != nil, err)
	}
	if u, err := b.Locker().TryLock(ctx, "c2", time.Minute); u == nil || err != nil {
		t.Errorf("other id: %v, %v; want the lock", u != nil, err)
	}
	unlock()
	unlock() // releasing twice is harmless
	if u, err := b.Locker().TryLock(ctx, "c1", time.Minute); u == nil || err != nil {
		t.Errorf("after release: %v, %v; want the lock", u != nil, err)
	}
}

// A holder whose lock expired and was taken over must not release the new
// holder's lock.
func TestLockExpiredHolderCannotReleaseSuccessor(t *testing.T) {
	a, b := twoReplicas(t)

	unlockA, err := a.Locker().TryLock(ctx, "c1", 20*time.Millisecond)
	if err != nil || unlockA == nil {
		t.Fatalf("TryLock: %v, %v", unlockA != nil, err)
	}
	var unlockB func()
	gatewaytest.WaitFor(t, 10*time.Second, "the first lock to expire and b to take it", func() bool {
		unlockB, err = b.Locker().TryLock(ctx, "c1", time.Minute)
		return unlockB != nil
	})
	unlockA()
	if u, err := a.Locker().TryLock(ctx, "c1", time.Minute); u != nil || err != nil {
		t.Errorf("after the expired holder's release: %v, %v; want still held by b", u != nil, err)
	}
	unlockB()
}

func TestLockKeyLayout(t *testing.T) {
	srv := redistest.Start(t)
	a := newReplica(t, srv.URL(), nil, nil)
	if _, err := a.Locker().TryLock(ctx, "c1", time.Minute); err != nil {
		t.Fatal(err)
	}
	ttl, err := rawClient(t, srv.Addr).PTTL(ctx, "bluetape-gateway:v1:lock:c1").Result()
	if err != nil || ttl <= 0 || ttl > time.Minute {
		t.Errorf("PTTL: %v, %v; want up to a minute", ttl, err)
	}
}
