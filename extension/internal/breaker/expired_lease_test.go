package breaker

import (
	"context"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/api"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/cache"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/policy"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
)

func (f *fixture) extensionDefaultRefresh(ps policy.Policies) (*Breaker, *cache.Cache) {
	b := New(func(context.Context) (*store.Store, error) { return f.st, nil }, Options{Policies: ps, Logger: quiet(), ClaimTimeout: 2 * time.Second})
	c := cache.New(f.st, cache.Options{Admitter: b, Logger: quiet()}) // RefreshInterval 1s default
	b.SetCache(c)
	return b, c
}

func TestExpiredTokenCountsAsOrdinaryOutcome(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.put(t, circuit.Circuit{ID: "svc", State: circuit.HalfOpen, Version: 1})
	b := New(func(context.Context) (*store.Store, error) { return f.st, nil }, Options{LeaseTTL: 100 * time.Millisecond, Logger: quiet(), ClaimTimeout: 2 * time.Second})
	a := b.Admit(ctx, f.get(t, "svc"), time.Now(), true)
	if a.Probe == "" {
		t.Fatal(a)
	}
	time.Sleep(300 * time.Millisecond)
	// Someone else claims the expired slot.
	other := New(func(context.Context) (*store.Store, error) { return f.st, nil }, Options{Logger: quiet(), ClaimTimeout: 2 * time.Second})
	o := other.Admit(ctx, f.get(t, "svc"), time.Now(), true)
	t.Logf("other claim after expiry: allowed=%v", o.Allowed)
	res, err := b.Report(ctx, "svc", []api.Outcome{{Success: ptr(true), LatencyMs: 5000, ProbeToken: a.Probe}})
	t.Logf("late report of expired lease: %+v %v counted=%+v table=%+v", res, err, b.Counted("svc"), f.get(t, "svc"))
	if res.State != "" && b.Counted("svc").IsZero() {
		t.Errorf("BUG: expired token applied as a probe (README: counted as an ordinary outcome); concurrent with another live probe=%v", o.Allowed)
	}
}
