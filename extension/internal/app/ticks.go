package app

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// minTick is the shortest period of the timer that stands in for
	// INVOKE, whatever the refresh interval.
	minTick = 50 * time.Millisecond
	// warmFor: for this long after the last request to the local API (or
	// the start), ticks keep the circuits fresh. After it, an idle sandbox
	// makes no table call until the next request, whose first lookup then
	// waits for one read, as after an idle spell on demand.
	warmFor = time.Minute
)

// tickInterval is the timer's period for a refresh interval: a quarter of
// it, so that a circuit is read again at most 1.25 intervals after its
// last read (a tick that comes just before the value is due finds the
// next one a quarter of an interval later, not a whole interval).
func tickInterval(refresh time.Duration) time.Duration { return max(refresh/4, minTick) }

// activity tells a sandbox in use from an idle one, for routine: it
// counts the requests to the local API other than /health (through
// requestCounter) and the INVOKE events, without asking the cache or the
// breaker.
type activity struct {
	n   atomic.Uint64
	now func() time.Time

	// seen and lastActive belong to since, which routine calls one call
	// at a time.
	seen       uint64
	lastActive time.Time
}

// newActivity returns an activity on the clock now that counts the start
// as activity.
func newActivity(now func() time.Time) *activity {
	return &activity{now: now, lastActive: now()}
}

// mark counts one request or INVOKE.
func (a *activity) mark() { a.n.Add(1) }

// since reports whether anything was counted since the last call (busy),
// and whether the last activity, or the start, is at most warmFor ago
// (warm).
func (a *activity) since() (busy, warm bool) {
	now := a.now()
	n := a.n.Load()
	busy = n != a.seen
	if busy {
		a.seen, a.lastActive = n, now
	}
	return busy, now.Sub(a.lastActive) <= warmFor
}

// requestCounter counts the requests to the local API other than
// /health as activity.
type requestCounter struct {
	next     http.Handler
	activity *activity
}

// ServeHTTP counts r and passes it on.
func (c *requestCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/health" {
		c.activity.mark()
	}
	c.next.ServeHTTP(w, r)
}

// onTick handles a tick of the timer that stands in for INVOKE in a
// sandbox that gets no INVOKE event (Lambda Managed Instances, or INVOKE
// refused): it runs routine, as an INVOKE does in the others. Such a
// sandbox is never frozen, so the timer runs; the ticks run one at a
// time, never beside the event loop's handlers.
//
// An idle tick (no request since the last one) costs a few atomic loads,
// one pass over the held outcome windows, and no table call, log line or
// metric once the sandbox has been idle for warmFor (see routine).
func (x *extension) onTick(ctx context.Context) { x.routine(ctx) }

// startTicks calls onTick every x.tickEvery, one tick at a time, until
// ctx ends or the returned stop is called; stop waits for a tick in
// progress, so that nothing ticks during the shutdown. Without a period
// (INVOKE events come) it does nothing.
func (x *extension) startTicks(ctx context.Context) (stop func()) {
	if x.tickEvery == 0 {
		return func() {}
	}
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(x.tickEvery)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				x.onTick(ctx) // routine does not let ctx cancel its work
			case <-done:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			<-exited
		})
	}
}
