package breaker

import (
	"context"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/api"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
)

// A probe lease claimed on a cached HALF_OPEN that the table has moved
// past is given back, and the caller is answered from the table.
func TestClaimOnStaleHalfOpenIsGivenBack(t *testing.T) {
	tests := []struct {
		name        string
		probe       bool // move on by a failed probe, else by a closing write
		wantState   circuit.State
		wantAllowed bool
	}{
		{name: "a failed probe reopened it", probe: true, wantState: circuit.Open, wantAllowed: false},
		{name: "the updater closed it", probe: false, wantState: circuit.Closed, wantAllowed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			f.put(t, circuit.Circuit{ID: "svc", State: circuit.HalfOpen, Version: 1})
			stale := f.get(t, "svc")

			if tt.probe {
				// Extension A probes and reports a failure.
				a := f.breaker()
				first := a.Admit(ctx, stale, time.Now(), true)
				if !first.Allowed || first.Probe == "" {
					t.Fatalf("first claim: %+v, want a probe", first)
				}
				if _, err := a.Report(ctx, "svc", []api.Outcome{{Success: ptr(false), LatencyMs: 5, ProbeToken: first.Probe}}); err != nil {
					t.Fatal(err)
				}
			} else {
				f.put(t, circuit.Circuit{ID: "svc", State: circuit.Closed, Version: 2})
			}
			moved := f.get(t, "svc")
			if moved.Version <= stale.Version {
				t.Fatalf("the probe did not move the circuit: %+v", moved)
			}

			// Extension B still caches HALF_OPEN v1.
			b := f.breaker()
			got := b.Admit(ctx, stale, time.Now(), true)
			if got.Allowed != tt.wantAllowed || got.Probe != "" {
				t.Errorf("claim on the stale HALF_OPEN: allowed=%v probe=%q, want allowed=%v and no probe", got.Allowed, got.Probe, tt.wantAllowed)
			}
			if got.Circuit.Version != moved.Version || got.Circuit.State != tt.wantState {
				t.Errorf("answered from %s v%d, want the table's %s v%d", got.Circuit.State, got.Circuit.Version, tt.wantState, moved.Version)
			}

			// The slot was given back: a fresh HALF_OPEN can be probed
			// at once, not after the lease's TTL.
			cur := f.get(t, "svc")
			next := cur
			next.State, next.Version = circuit.HalfOpen, cur.Version+1
			f.put(t, next)
			// The release runs beside the answer; allow it a moment.
			deadline := time.Now().Add(2 * time.Second)
			for {
				again := f.breaker().Admit(ctx, f.get(t, "svc"), time.Now(), true)
				if again.Allowed && again.Probe != "" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("claim on the fresh HALF_OPEN v%d: %+v, want a probe (slot still held by the stale claim?)", next.Version, again)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// A lease whose caller left is given back at once.
func TestAbandonFreesTheSlot(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.put(t, circuit.Circuit{ID: "svc", State: circuit.HalfOpen, Version: 1})
	b := f.breaker()
	a := b.Admit(ctx, f.get(t, "svc"), time.Now(), true)
	if a.Probe == "" {
		t.Fatalf("no probe: %+v", a)
	}
	if b.Abandon(ctx, "other", a.Probe) {
		t.Error("Abandon took a lease under another circuit's ID")
	}
	if !b.Abandon(ctx, "svc", a.Probe) {
		t.Fatal("Abandon did not find the lease")
	}
	if b.Abandon(ctx, "svc", a.Probe) {
		t.Error("Abandon gave the same lease back twice")
	}
	if again := f.breaker().Admit(ctx, f.get(t, "svc"), time.Now(), true); again.Probe == "" {
		t.Errorf("slot still held after Abandon: %+v", again)
	}
}
