package redisstore

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// releaseChannel carries the id of each lock released by its holder,
// after the holder wrote its answer, so that the replicas waiting for it
// look again at once instead of polling.
const releaseChannel = keyPrefix + "released"

// The checks of a waiting replica on the lock it waits for. With the
// subscription up they are only a safety net, for a lost message; without
// it they are the way to learn of the release, so they start sooner. Each
// check waits twice as long as the one before, and never beyond the lock's
// expiry, when a waiter may take over from a holder that died.
const (
	firstCheckSubscribed = time.Second
	firstCheckPolling    = 20 * time.Millisecond
	maxCheckSubscribed   = 4 * time.Second
	maxCheckPolling      = time.Second
)

// waiters are the replica's requests waiting for a lock held by another
// replica, by id. One subscription per client serves them all.
type waiters struct {
	// subscribed is true while the subscription to releaseChannel is
	// confirmed, and false from the moment Redis may have dropped it.
	subscribed atomic.Bool

	mu   sync.Mutex
	byID map[string]*waitSlot
}

// waitSlot is closed when its id's lock is released.
type waitSlot struct {
	released chan struct{}
	n        int // waiters holding the slot
}

func newWaiters() *waiters { return &waiters{byID: map[string]*waitSlot{}} }

// watch registers a waiter for id's release; stop unregisters it.
func (w *waiters) watch(id string) (released <-chan struct{}, stop func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.byID[id]
	if s == nil {
		s = &waitSlot{released: make(chan struct{})}
		w.byID[id] = s
	}
	s.n++
	return s.released, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		s.n--
		if s.n == 0 && w.byID[id] == s {
			delete(w.byID, id)
		}
	}
}

// wake tells id's waiters that its lock was released.
func (w *waiters) wake(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if s := w.byID[id]; s != nil {
		close(s.released)
		delete(w.byID, id)
	}
}

// Wait returns once id's lock, held by another replica, may be taken: its
// holder released it (the holder publishes the release, after writing its
// answer), or it expired. It returns ctx's error if ctx ends first, and
// nil at once if Redis does not answer: the caller's next TryLock then
// tells it to go ahead alone.
//
// The waiter is registered before the lock is looked at, so a release
// published after that look is not missed. With the subscription up, the
// lock is looked at again only rarely, in case a message was lost; with
// it down, on a growing backoff. Either way never after the lock expires.
func (l *Election) Wait(ctx context.Context, id string) error {
	released, stop := l.waits.watch(id)
	defer stop()
	next, limit := firstCheckPolling, maxCheckPolling
	if l.waits.subscribed.Load() {
		next, limit = firstCheckSubscribed, maxCheckSubscribed
	}
	key := lockKey(id)
	for {
		var ttl time.Duration
		if !l.conn.do(ctx, func(ctx context.Context, rdb redis.UniversalClient) error {
			var err error
			ttl, err = rdb.PTTL(ctx, key).Result()
			return err
		}) {
			return ctx.Err()
		}
		// PTTL answers -2 for a missing key and -1 for a key without
		// expiry, which no replica writes.
		if ttl == -2 {
			return nil
		}
		d := next
		if ttl > 0 {
			d = min(d, ttl+time.Millisecond)
		}
		t := time.NewTimer(d)
		select {
		case <-released:
			t.Stop()
			return nil
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		next = min(2*next, limit)
	}
}

// listen applies what other replicas publish, through one subscription
// on cl, until ctx is done: evicted ids leave the first level, and
// released locks wake their waiters. Messages sent while this replica is
// disconnected are lost; L1TTL bounds how long it may then serve an
// evicted copy, and the waiters' checks find a released lock.
func (s *Backend) listen(ctx context.Context, cl *client) {
	ps := cl.rdb.Subscribe(ctx, evictChannel, releaseChannel)
	defer ps.Close()
	msgs := ps.ChannelWithSubscriptions()
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-msgs:
			if !ok {
				return
			}
			switch m := m.(type) {
			case *redis.Message:
				switch m.Channel {
				case evictChannel:
					s.cache.l1.Delete(m.Payload)
				case releaseChannel:
					s.locker.waits.wake(m.Payload)
				}
			case *redis.Subscription:
				if m.Channel == releaseChannel && s.conn.cur.Load() == cl {
					s.locker.waits.subscribed.Store(m.Kind == "subscribe")
				}
			}
		}
	}
}
