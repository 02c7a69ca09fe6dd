// Package fakeclock is a settable wall clock with a monotonic clock
// beside it, for tests of code that tells a restore from a snapshot (the
// wall clock alone moves) from time passing (both move).
package fakeclock

import (
	"sync"
	"time"
)

// Clock is safe for concurrent use.
type Clock struct {
	mu   sync.Mutex
	wall time.Time
	up   time.Duration
}

// New returns a clock whose wall clock reads start and whose monotonic
// clock reads 0.
func New(start time.Time) *Clock { return &Clock{wall: start} }

// Now is the wall clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wall
}

// Uptime is the monotonic clock: the time passed since New, not counting
// restores.
func (c *Clock) Uptime() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.up
}

// Advance moves both clocks by d: time passing while the process runs or
// is frozen.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wall = c.wall.Add(d)
	c.up += d
}

// Restore moves the wall clock alone by d, as a restore from a snapshot
// taken d earlier does.
func (c *Clock) Restore(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wall = c.wall.Add(d)
}
