package breaker

import (
	"context"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
)

// An extension that still caches OPEN past retryAt ends the cool-down
// against the table; when the table holds CLOSED under FORCED_OPEN, the
// override decides.
func TestCooldownEndHonoursOverrideFoundInTable(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	now := time.Now()
	f.put(t, circuit.Circuit{ID: "svc", State: circuit.Open, Version: 1, OpenCount: 1, RetryAt: now.Add(-time.Second)})
	stale := f.get(t, "svc") // what this extension still caches
	f.put(t, circuit.Circuit{ID: "svc", State: circuit.Closed, Version: 2})
	if _, err := f.st.SetOverride(ctx, "svc", circuit.ForcedOpen, "bad deploy", time.Time{}, now); err != nil {
		t.Fatal(err)
	}
	b := New(func(context.Context) (*store.Store, error) { return f.st, nil }, Options{Logger: quiet(), ClaimTimeout: 2 * time.Second})
	a := b.Admit(ctx, stale, time.Now(), true)
	if a.Allowed || a.Probe != "" || a.Circuit.Override != circuit.ForcedOpen || a.Circuit.EffectiveState(time.Now()) != circuit.Open {
		t.Errorf("admission %+v: want a denial answered from the FORCED_OPEN circuit", a)
	}
}
