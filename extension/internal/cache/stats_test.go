package cache

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
)

func TestStatsCountHitsMissesStaleAndRefused(t *testing.T) {
	r := newFakeReader(open("a", 2))
	clk := newClock()
	c := newTestCache(t, r, clk, Options{RefreshInterval: time.Second, MaxStaleness: time.Minute, FailAllow: true})
	ctx := context.Background()
	if err := c.Prefetch(ctx, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		c.Lookup(ctx, "a") // fresh OPEN: hit, refused
	}
	c.Lookup(ctx, "b") // never seen: miss, allowed (CLOSED)
	c.Lookup(ctx, "b") // now cached: hit

	r.fail(errors.New("throttled"))
	clk.Advance(2 * time.Second)
	c.Lookup(ctx, "a") // due: starts a refresh that fails; served fresh-looking value meanwhile
	_ = c.Wait(ctx)
	c.Lookup(ctx, "a") // the last read failed: stale, refused

	got := c.TakeStats()
	if a := got["a"]; a.Refused != 5 || a.Stale < 1 || a.Hits+a.Stale != 5 || a.Misses != 0 {
		t.Errorf("stats of a = %+v, want 5 lookups, all refused, at least one stale", a)
	}
	if a := got["a"]; a.State != circuit.Open {
		t.Errorf("last state of a = %s, want OPEN", a.State)
	}
	if b := got["b"]; b != (Stats{Hits: 1, Misses: 1, State: circuit.Closed}) {
		t.Errorf("stats of b = %+v, want one miss and one hit, none refused", b)
	}
	if again := c.TakeStats(); len(again) != 0 {
		t.Errorf("TakeStats did not reset: %+v", again)
	}
}
