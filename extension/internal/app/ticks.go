package app

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/breaker"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/cache"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/metrics"
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

// requestCounter counts the requests to the local API other than
// /health, so that a tick can tell an idle sandbox from a busy one
// without asking the cache or the breaker.
type requestCounter struct {
	next http.Handler
	n    atomic.Uint64
}

// ServeHTTP counts r and passes it on.
func (c *requestCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/health" {
		c.n.Add(1)
	}
	c.next.ServeHTTP(w, r)
}

// ticker does on a timer, for a sandbox that gets no INVOKE event (Lambda
// Managed Instances, or INVOKE refused), what INVOKE does in the others:
// it starts the reads of the circuits that are due, flushes the outcome
// counts that are due and writes the lookup metrics. Such a sandbox is
// never frozen, so the timer runs; the ticks run one at a time, on a
// goroutine of their own beside the event loop, which stops them before
// SHUTDOWN's work.
//
// An idle tick (no request since the last one) costs a few atomic loads,
// one pass over the held outcome windows, and no table call, log line or
// metric once the sandbox has been idle for warmFor.
type ticker struct {
	cache    *cache.Cache
	brk      *breaker.Breaker
	emf      *metrics.Writer
	log      *slog.Logger
	requests *requestCounter
	now      func() time.Time

	seen       uint64
	lastActive time.Time
}

// newTicker returns a ticker that counts the start as activity.
func newTicker(c *cache.Cache, brk *breaker.Breaker, emf *metrics.Writer, log *slog.Logger, requests *requestCounter) *ticker {
	return &ticker{cache: c, brk: brk, emf: emf, log: log, requests: requests, now: time.Now, lastActive: time.Now()}
}

// tick does one round of the INVOKE work, within flushBudget for the
// flush.
func (t *ticker) tick(ctx context.Context) {
	now := t.now()
	n := t.requests.n.Load()
	busy := n != t.seen
	if busy {
		t.seen, t.lastActive = n, now
	}
	if now.Sub(t.lastActive) <= warmFor {
		t.cache.RefreshDue()
	}
	fctx, cancel := context.WithTimeout(ctx, flushBudget)
	began := time.Now()
	res, err := t.brk.Flush(fctx)
	cancel()
	logFlush(t.log, began, res, err)
	if busy {
		// Lookups and rejected outcomes are counted only by requests.
		emitLookupMetrics(t.brk, t.emf, t.log)
		emitRejected(t.brk, t.emf, t.log)
	}
}

// startTicks runs x.ticker every x.tickEvery, one tick at a time, until
// ctx ends or the returned stop is called; stop waits for a tick in
// progress, so that nothing ticks during the shutdown. Without a ticker
// (INVOKE events come) it does nothing.
func (x *extension) startTicks(ctx context.Context) (stop func()) {
	if x.ticker == nil {
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
				x.ticker.tick(context.WithoutCancel(ctx))
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
