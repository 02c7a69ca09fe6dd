package breaker

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/api"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dynalite"
)

// After Stop, outcomes are refused rather than counted after the last
// flush, and lookups claim no probe lease.
func TestStopRefusesOutcomesAndClaims(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.put(t, circuit.Circuit{ID: "half", State: circuit.HalfOpen, Version: 1})
	b := f.breaker()
	if res, err := b.Report(ctx, "svc", []api.Outcome{{Success: ptr(false)}, {Success: ptr(true)}}); err != nil || res.Accepted != 2 {
		t.Fatalf("report before Stop = %+v, %v; want 2 accepted", res, err)
	}
	b.Stop()
	res, err := b.Report(ctx, "svc", []api.Outcome{{Success: ptr(false)}})
	if !errors.Is(err, ErrStopped) || res.Accepted != 0 {
		t.Errorf("report after Stop = %+v, %v; want none accepted and ErrStopped", res, err)
	}
	if b.Pending() != 1 {
		t.Errorf("%d buckets pending, want the 1 reported before Stop", b.Pending())
	}
	if a := b.admit(ctx, f.get(t, "half"), time.Now()); a.Allowed || a.Probe != "" {
		t.Errorf("lookup after Stop: %+v, want no probe", a)
	}
	if a := f.breaker().admit(ctx, f.get(t, "half"), time.Now()); a.Probe == "" {
		t.Errorf("the slot is held after a stopped breaker's lookup: %+v", a)
	}
}

// slowWrites delays every UpdateItem while on is set.
type slowWrites struct {
	store.API
	on    atomic.Bool
	delay time.Duration
}

func (s *slowWrites) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	if s.on.Load() {
		select {
		case <-time.After(s.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return s.API.UpdateItem(ctx, in, opts...)
}

// Leases held at SHUTDOWN are settled side by side: with writes taking
// 300 ms, four leases are all released within an 800 ms share of the
// deadline, which one after another would take 1.2 s.
func TestEndProbesSettlesConcurrently(t *testing.T) {
	db := dynalite.Start(t)
	slow := &slowWrites{API: db.Client(), delay: 300 * time.Millisecond}
	st := store.New(slow, db.NewTable(t)).WithLogger(quiet())
	ctx := context.Background()
	b := newBreaker(st, Options{Logger: quiet(), ClaimTimeout: 2 * time.Second})
	var ids []string
	for i := range 4 {
		id := fmt.Sprintf("svc%d", i)
		ids = append(ids, id)
		if err := st.Write(ctx, circuit.New(id), circuit.Circuit{ID: id, State: circuit.HalfOpen, Version: 1}, circuit.Transition); err != nil {
			t.Fatal(err)
		}
		c, _, err := st.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if a := b.admit(ctx, c, time.Now()); a.Probe == "" {
			t.Fatalf("%s: no lease: %+v", id, a)
		}
	}
	slow.on.Store(true)
	sctx, cancel := context.WithTimeout(ctx, 800*time.Millisecond)
	defer cancel()
	if n := b.EndProbes(sctx, "spindown"); n != 4 {
		t.Fatalf("EndProbes settled %d leases, want 4", n)
	}
	slow.on.Store(false)
	other := newBreaker(st, Options{Logger: quiet(), ClaimTimeout: 2 * time.Second})
	for _, id := range ids {
		c, _, err := st.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if a := other.admit(ctx, c, time.Now()); a.Probe == "" {
			t.Errorf("%s: slot still held after EndProbes within its share: %+v", id, a)
		}
	}
}

func TestExpiredTokenCountsAsOrdinaryOutcome(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.put(t, circuit.Circuit{ID: "svc", State: circuit.HalfOpen, Version: 1})
	b := newBreaker(f.st, Options{Logger: quiet(), ClaimTimeout: 2 * time.Second})
	b.leaseTTL = 100 * time.Millisecond
	a := b.admit(ctx, f.get(t, "svc"), time.Now())
	if a.Probe == "" {
		t.Fatal(a)
	}
	time.Sleep(300 * time.Millisecond)
	// Someone else claims the expired slot.
	other := newBreaker(f.st, Options{Logger: quiet(), ClaimTimeout: 2 * time.Second})
	o := other.admit(ctx, f.get(t, "svc"), time.Now())
	t.Logf("other claim after expiry: allowed=%v", o.Allowed)
	res, err := b.Report(ctx, "svc", []api.Outcome{{Success: ptr(true), LatencyMs: 5000, ProbeToken: a.Probe}})
	t.Logf("late report of expired lease: %+v %v counted=%+v table=%+v", res, err, b.Counted("svc"), f.get(t, "svc"))
	if res.State != "" && b.Counted("svc").IsZero() {
		t.Errorf("BUG: expired token applied as a probe (README: counted as an ordinary outcome); concurrent with another live probe=%v", o.Allowed)
	}
}

// Leases held at SHUTDOWN are settled: after a timeout or failure they
// count as failed probes; after a spindown they are released for another
// sandbox to probe at once.
func TestEndProbesAtShutdown(t *testing.T) {
	tests := []struct {
		reason    string
		wantState circuit.State
	}{
		{reason: "timeout", wantState: circuit.Open},
		{reason: "failure", wantState: circuit.Open},
		{reason: "spindown", wantState: circuit.HalfOpen},
		{reason: "", wantState: circuit.HalfOpen}, // a local run
	}
	for _, tt := range tests {
		t.Run(tt.reason, func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			f.put(t, circuit.Circuit{ID: "svc", State: circuit.HalfOpen, Version: 1})
			b := f.breaker()
			if a := b.admit(ctx, f.get(t, "svc"), time.Now()); a.Probe == "" {
				t.Fatalf("no probe lease: %+v", a)
			}
			if a := f.breaker().admit(ctx, f.get(t, "svc"), time.Now()); a.Allowed {
				t.Fatalf("a second sandbox got a probe while the lease is held: %+v", a)
			}

			if n := b.EndProbes(ctx, tt.reason); n != 1 {
				t.Fatalf("EndProbes settled %d leases, want 1", n)
			}
			if n := b.EndProbes(ctx, tt.reason); n != 0 {
				t.Errorf("a second EndProbes settled %d leases, want 0", n)
			}
			after := f.get(t, "svc")
			if after.State != tt.wantState {
				t.Fatalf("circuit after EndProbes(%s): %s v%d, want %s", tt.reason, after.State, after.Version, tt.wantState)
			}
			if tt.wantState == circuit.HalfOpen {
				// The slot is free at once, not after the lease's TTL.
				if a := f.breaker().admit(ctx, after, time.Now()); a.Probe == "" {
					t.Errorf("another sandbox could not probe after the release: %+v", a)
				}
			} else if after.Version != 2 || after.Reason == "" {
				t.Errorf("reopened circuit %+v, want version 2 with a reason", after)
			}
		})
	}
}
