package gatewaytest

import (
	"sync"
	"time"
)

// Clock is a settable clock for code that takes a func() time.Time, such
// as a cache's or a rate limiter's Now option: it stands still until the
// test advances it. A Clock is safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock that reads 2026-01-01 00:00:00 UTC.
func NewClock() *Clock { return NewClockAt(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) }

// NewClockAt returns a Clock that reads start.
func NewClockAt(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's time. Pass the method value c.Now where a
// func() time.Time is wanted.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d, or back if d is negative.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}
