package breaker

import (
	"context"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/policy"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
)

// Leases held at SHUTDOWN are settled: after a timeout or failure they
// count as failed probes; after a spindown they are released for another
// sandbox to probe at once.
func TestEndProbesAtShutdown(t *testing.T) {
	tests := []struct {
		reason    string
		failed    bool
		wantState circuit.State
	}{
		{reason: "timeout", failed: true, wantState: circuit.Open},
		{reason: "spindown", failed: false, wantState: circuit.HalfOpen},
	}
	for _, tt := range tests {
		t.Run(tt.reason, func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			f.put(t, circuit.Circuit{ID: "svc", State: circuit.HalfOpen, Version: 1})
			b := f.breaker()
			if a := b.Admit(ctx, f.get(t, "svc"), time.Now(), true); a.Probe == "" {
				t.Fatalf("no probe lease: %+v", a)
			}
			if a := f.breaker().Admit(ctx, f.get(t, "svc"), time.Now(), true); a.Allowed {
				t.Fatalf("a second sandbox got a probe while the lease is held: %+v", a)
			}

			if n := b.EndProbes(ctx, tt.failed, tt.reason); n != 1 {
				t.Fatalf("EndProbes settled %d leases, want 1", n)
			}
			if n := b.EndProbes(ctx, tt.failed, tt.reason); n != 0 {
				t.Errorf("a second EndProbes settled %d leases, want 0", n)
			}
			after := f.get(t, "svc")
			if after.State != tt.wantState {
				t.Fatalf("circuit after EndProbes(%s): %s v%d, want %s", tt.reason, after.State, after.Version, tt.wantState)
			}
			if tt.wantState == circuit.HalfOpen {
				// The slot is free at once, not after the lease's TTL.
				if a := f.breaker().Admit(ctx, after, time.Now(), true); a.Probe == "" {
					t.Errorf("another sandbox could not probe after the release: %+v", a)
				}
			} else if after.Version != 2 || after.Reason == "" {
				t.Errorf("reopened circuit %+v, want version 2 with a reason", after)
			}
		})
	}
}

// A probe lease lasts the service's probeTimeout.
func TestLeaseLastsTheProbeTimeout(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, id := range []string{"default", "slow"} {
		f.put(t, circuit.Circuit{ID: id, State: circuit.HalfOpen, Version: 1})
	}
	ps := policy.Policies{"slow": {ProbeTimeout: policy.Duration(45 * time.Second)}}
	b := New(func(context.Context) (*store.Store, error) { return f.st, nil }, Options{Policies: ps, Logger: quiet(), ClaimTimeout: 2 * time.Second})
	now := time.Now()
	for id, want := range map[string]time.Duration{"default": policy.DefaultProbeTimeout, "slow": 45 * time.Second} {
		a := b.Admit(ctx, f.get(t, id), now, true)
		l, ok := b.leases[a.Probe]
		if !ok {
			t.Fatalf("%s: no lease held: %+v", id, a)
		}
		if got := l.Until.Sub(now); got != want {
			t.Errorf("%s: lease lasts %s, want %s", id, got, want)
		}
	}
}
