package cache

import (
	"context"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
)

// A background read that started before Put lands after it and replaces the
// newer version with the older one.
func TestFetchDoesNotOverwriteNewerPut(t *testing.T) {
	clk := newClock()
	r := newFakeReader(circuit.Circuit{ID: "a", State: circuit.Closed, Version: 1})
	c := newTestCache(t, r, clk, Options{})
	ctx := context.Background()
	if d := c.Lookup(ctx, "a"); !d.Allowed {
		t.Fatal(d)
	}
	gate := make(chan struct{})
	r.mu.Lock()
	r.gate = gate
	r.mu.Unlock()
	clk.Advance(2 * time.Second)
	c.RefreshDue() // read starts (returns CLOSED v1: it read before the trip)
	c.Lookup(ctx, "a")
	// The breaker trips the circuit and puts OPEN v2.
	c.Put(circuit.Circuit{ID: "a", State: circuit.Open, Version: 2, RetryAt: clk.Now().Add(time.Minute)})
	if d := c.Lookup(ctx, "a"); d.Allowed {
		t.Fatalf("right after Put: %+v", d)
	}
	close(gate)
	_ = c.Wait(ctx)
	got, _ := c.Peek("a")
	d := c.Lookup(ctx, "a")
	t.Logf("after stale read landed: cached %s v%d, allowed=%v", got.State, got.Version, d.Allowed)
	if got.Version < 2 {
		t.Errorf("BUG: cache regressed from v2 OPEN to v%d %s; calls admitted", got.Version, got.State)
	}
}
