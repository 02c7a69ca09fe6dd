// Package inflight counts work in progress, so that a caller can wait
// until none runs while new work may still start, and can refuse new work
// from some moment on.
//
// A sync.WaitGroup does not fit these uses: its Add must not race its
// Wait, and Wait cannot end with a context.
package inflight

import (
	"context"
	"sync"
)

// Counter counts work in progress. The zero value is ready to use; a
// Counter must not be copied after first use.
type Counter struct {
	mu     sync.Mutex
	n      int
	idle   chan struct{} // closed when n drops to 0
	closed bool
}

// Enter counts one more piece of work and reports true, or reports false
// once Close has been called. Every Enter that reports true must be
// followed by one Leave.
func (c *Counter) Enter() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.add()
	return true
}

// Go runs f in a new goroutine, counted until f returns. Unlike Enter it
// runs f even after Close: it is for work that must happen, such as giving
// back a lease.
func (c *Counter) Go(f func()) {
	c.mu.Lock()
	c.add()
	c.mu.Unlock()
	go func() {
		defer c.Leave()
		f()
	}()
}

func (c *Counter) add() {
	if c.n == 0 {
		c.idle = make(chan struct{})
	}
	c.n++
}

// Leave ends one piece of work counted by Enter.
func (c *Counter) Leave() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n--
	if c.n == 0 {
		close(c.idle)
	}
}

// Close makes every later Enter report false. Work already counted goes
// on; Wait waits for it.
func (c *Counter) Close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
}

// Wait returns once no counted work runs, or with ctx's error when ctx
// ends first.
func (c *Counter) Wait(ctx context.Context) error {
	c.mu.Lock()
	if c.n == 0 {
		c.mu.Unlock()
		return nil
	}
	idle := c.idle
	c.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
