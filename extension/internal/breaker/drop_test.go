package breaker

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/api"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/policy"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dynalite"
)

// clock is a settable clock for Options.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Counts that failed to reach the table are kept only while they can
// still count in a window; counts the table refuses for good are dropped
// at once. Neither is retried forever.
func TestFlushDropsWhatCanNeverCount(t *testing.T) {
	srv := dynalite.Start(t)
	api0 := &failingAPI{API: srv.Client()}
	table := srv.NewTable(t)
	ctx := context.Background()

	t.Run("older than the window", func(t *testing.T) {
		clk := &clock{now: time.Now()}
		st := store.New(api0, table).WithLogger(quiet())
		b := New(func(context.Context) (*store.Store, error) { return st, nil }, Options{Logger: quiet(), Now: clk.Now,
			Policies: policy.Policies{"svc": {Window: policy.Duration(10 * time.Second)}}})
		_, _ = b.Report(ctx, "svc", []api.Outcome{{Success: ptr(false)}})
		api0.fail.Store(true)
		defer api0.fail.Store(false)
		// Still inside the window: kept for the next flush.
		clk.Add(9 * time.Second)
		if res, err := b.Flush(ctx); err == nil || res.Failed != 1 || res.Dropped != 0 || b.Pending() != 1 {
			t.Fatalf("flush inside the window = %+v, %v, pending %d; want it kept", res, err, b.Pending())
		}
		// Bucket (5 s) plus window (10 s) later, it can no longer count.
		clk.Add(7 * time.Second)
		res, err := b.Flush(ctx)
		if err != nil || res.Dropped != 1 || res.Failed != 0 || res.Written != 0 || b.Pending() != 0 {
			t.Fatalf("flush past the window = %+v, %v, pending %d; want it dropped without a write", res, err, b.Pending())
		}
	})

	t.Run("refused by the table", func(t *testing.T) {
		st := store.New(api0, "no-such-table").WithLogger(quiet())
		b := New(func(context.Context) (*store.Store, error) { return st, nil }, Options{Logger: quiet()})
		_, _ = b.Report(ctx, "svc", []api.Outcome{{Success: ptr(true)}, {Success: ptr(false)}})
		res, err := b.Flush(ctx)
		if err == nil || !store.Permanent(err) || res.Dropped != 1 || res.Failed != 0 || b.Pending() != 0 {
			t.Fatalf("flush to a missing table = %+v, %v, pending %d; want the counts dropped and the error returned", res, err, b.Pending())
		}
	})
}
