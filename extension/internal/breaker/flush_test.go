package breaker

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/api"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/cache"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/policy"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dynalite"
)

// A flush whose writes all fail returns one small error: a count and the
// first few, not every error joined (a log line over CloudWatch Logs'
// 256 KB event limit is cut).
func TestFlushErrorStaysSmall(t *testing.T) {
	srv := dynalite.Start(t)
	api0 := &failingAPI{API: srv.Client()}
	st := store.New(api0, srv.NewTable(t)).WithLogger(quiet())
	b := newBreaker(st, Options{Logger: quiet()})
	ctx := context.Background()
	const circuits = 200
	for i := range circuits {
		if _, err := b.Report(ctx, fmt.Sprintf("svc-%d", i), []api.Outcome{{Success: ptr(false)}}); err != nil {
			t.Fatal(err)
		}
	}
	api0.fail.Store(true)
	res, err := b.Flush(ctx)
	if err == nil || res.Failed != circuits {
		t.Fatalf("flush = %+v, %v; want %d failed writes", res, err, circuits)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, fmt.Sprintf("%d errors, the first %d: ", circuits, maxLoggedErrors)) || strings.Count(msg, "add counts to") != maxLoggedErrors || len(msg) > 2000 {
		t.Fatalf("flush error (%d bytes) = %.300s", len(msg), msg)
	}
	if b.Pending() != circuits {
		t.Fatalf("pending %d after the failed flush, want every count kept", b.Pending())
	}
}

// The cache says OPEN, but another sandbox's probe has closed the circuit
// since it was read: failures flushed now are evaluated against the table
// and trip it, instead of being skipped as "already open".
func TestFlushTripsWhenTheCacheIsBehind(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.put(t, circuit.Circuit{ID: "svc", State: circuit.Open, Version: 1, OpenCount: 1, RetryAt: time.Now().Add(time.Hour)})
	c := cache.New(f.st, cache.Options{RefreshInterval: time.Hour, Logger: quiet()})
	b := New(func(context.Context) (*store.Store, error) { return f.st, nil }, c, Options{Logger: quiet(), ClaimTimeout: 2 * time.Second})
	if d := b.Lookup(ctx, "svc"); d.State != circuit.Open {
		t.Fatalf("cached %s, want OPEN", d.State)
	}
	// Elsewhere: HALF_OPEN, then closed by its probes, a minute ago.
	f.put(t, circuit.Circuit{ID: "svc", State: circuit.HalfOpen, Version: 2, OpenCount: 1, UpdatedAt: time.Now().Add(-2 * time.Minute)})
	f.put(t, circuit.Circuit{ID: "svc", State: circuit.Closed, Version: 3, UpdatedAt: time.Now().Add(-time.Minute)})
	if cached, _ := c.Peek("svc"); cached.State != circuit.Open {
		t.Fatalf("cache refreshed to %s; the test needs it behind the table", cached.State)
	}

	outs := make([]api.Outcome, 30)
	for i := range outs {
		outs[i] = api.Outcome{Success: ptr(false), LatencyMs: 5}
	}
	if _, err := b.Report(ctx, "svc", outs); err != nil {
		t.Fatal(err)
	}
	res, err := b.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := f.get(t, "svc")
	if res.Tripped != 1 || got.State != circuit.Open || got.Version != 4 {
		t.Errorf("flush of 30 failures = %+v, table %s v%d; want the circuit tripped to OPEN v4", res, got.State, got.Version)
	}
	if cached, _ := c.Peek("svc"); cached.Version != got.Version {
		t.Errorf("cache holds v%d after the trip, want v%d", cached.Version, got.Version)
	}
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
		b := newBreaker(st, Options{Logger: quiet(), Now: clk.Now,
			Policies: policy.Policies{"svc": {Passive: circuit.RateSettings{Window: 10 * time.Second}}}})
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
		b := newBreaker(st, Options{Logger: quiet()})
		_, _ = b.Report(ctx, "svc", []api.Outcome{{Success: ptr(true)}, {Success: ptr(false)}})
		res, err := b.Flush(ctx)
		if err == nil || !store.Permanent(err) || res.Dropped != 1 || res.Failed != 0 || b.Pending() != 0 {
			t.Fatalf("flush to a missing table = %+v, %v, pending %d; want the counts dropped and the error returned", res, err, b.Pending())
		}
	})
}
