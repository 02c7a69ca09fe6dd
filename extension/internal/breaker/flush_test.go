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
	b := New(func(context.Context) (*store.Store, error) { return st, nil }, Options{Logger: quiet()})
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
	b := New(func(context.Context) (*store.Store, error) { return f.st, nil }, Options{Logger: quiet(), ClaimTimeout: 2 * time.Second})
	c := cache.New(f.st, cache.Options{Admitter: b, RefreshInterval: time.Hour, Logger: quiet()})
	b.SetCache(c)
	if d := c.Lookup(ctx, "svc"); d.State != circuit.Open {
		t.Fatalf("cached %s, want OPEN", d.State)
	}
	// Elsewhere: HALF_OPEN, then closed by its probes, a minute ago.
	f.put(t, circuit.Circuit{ID: "svc", State: circuit.HalfOpen, Version: 2, OpenCount: 1, UpdatedAt: time.Now().Add(-2 * time.Minute)})
	f.put(t, circuit.Circuit{ID: "svc", State: circuit.Closed, Version: 3, UpdatedAt: time.Now().Add(-time.Minute)})
	if cached, _ := c.Peek("svc"); cached.State != circuit.Open {
		t.Fatalf("cache refreshed to %s; the test needs it behind the table", cached.State)
	}

	outs := make([]api.Outcome, 20)
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
		t.Errorf("flush of 20 failures = %+v, table %s v%d; want the circuit tripped to OPEN v4", res, got.State, got.Version)
	}
	if cached, _ := c.Peek("svc"); cached.Version != got.Version {
		t.Errorf("cache holds v%d after the trip, want v%d", cached.Version, got.Version)
	}
}
