package breaker

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/api"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/cache"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/policy"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
)

// A run of fastTripFailures failed calls makes this environment refuse at
// once, on its own: the table stays CLOSED, and the run is counted for the
// fleet. After the pause one trial call at a time goes through: a failure
// pauses twice as long, a success ends the local trip.
func TestLocalTripRefusesAtOnceAndTrialsOneCall(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	clk := &clock{now: time.Now()}
	c := cache.New(f.st, cache.Options{RefreshInterval: time.Hour, MissTimeout: 5 * time.Second, Now: clk.Now, Logger: quiet()})
	b := New(func(context.Context) (*store.Store, error) { return f.st, nil }, c, Options{Now: clk.Now, Logger: quiet(), ClaimTimeout: 2 * time.Second})
	fail := func() {
		t.Helper()
		if _, err := b.Report(ctx, "svc", []api.Outcome{{Success: ptr(false), LatencyMs: 5}}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range circuit.DefaultFastTripFailures - 1 {
		fail()
		if a := b.Lookup(ctx, "svc"); !a.Allowed {
			t.Fatalf("refused after %d failures, want the run to reach %d first", i+1, circuit.DefaultFastTripFailures)
		}
	}
	if b.Refusing("svc") {
		t.Fatal("Refusing before the run reached its length")
	}
	fail()
	if !b.Refusing("svc") || !b.LocalTrip("svc") {
		t.Fatal("not Refusing (or no LocalTrip) after the run, before any lookup")
	}
	if a := b.Lookup(ctx, "svc"); a.Allowed || a.State != circuit.Open {
		t.Fatalf("after the run: %+v, want refused with OPEN", a)
	}
	if got := f.get(t, "svc"); got.State != circuit.Closed || got.Version != 0 {
		t.Fatalf("table after one environment's run: %s v%d, want CLOSED and unwritten", got.State, got.Version)
	}
	if n := b.Counted("svc").Runs; n != 1 {
		t.Fatalf("runs counted %d, want 1", n)
	}

	clk.Add(localPause)
	if b.Refusing("svc") {
		t.Fatal("Refusing after the pause, when a trial call is due")
	}
	if a := b.Lookup(ctx, "svc"); !a.Allowed {
		t.Fatalf("after the pause: %+v, want a trial call", a)
	}
	if !b.Refusing("svc") {
		t.Fatal("not Refusing while the trial is in flight")
	}
	if a := b.Lookup(ctx, "svc"); a.Allowed {
		t.Fatal("a second call went through while the trial was in flight")
	}
	fail() // the trial failed: twice the pause
	clk.Add(localPause)
	if a := b.Lookup(ctx, "svc"); a.Allowed {
		t.Fatal("allowed one pause after a failed trial, want two")
	}
	clk.Add(localPause)
	if a := b.Lookup(ctx, "svc"); !a.Allowed {
		t.Fatal("no trial two pauses after a failed trial")
	}
	if _, err := b.Report(ctx, "svc", []api.Outcome{{Success: ptr(true), LatencyMs: 5}}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if a := b.Lookup(ctx, "svc"); !a.Allowed || a.State != circuit.Closed {
			t.Fatalf("after a successful trial: %+v, want CLOSED and allowed", a)
		}
	}
	if b.Refusing("svc") || b.LocalTrip("svc") {
		t.Fatal("Refusing or LocalTrip after a successful trial")
	}
}

// Refusing follows the cached circuit: an override, OPEN until its
// retryAt, HALF_OPEN (probes may go through), and a circuit not cached.
func TestRefusingFollowsTheCachedCircuit(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name string
		c    *circuit.Circuit // nil: nothing cached
		want bool
	}{
		{name: "not cached"},
		{name: "CLOSED", c: &circuit.Circuit{State: circuit.Closed, Version: 1}},
		{name: "OPEN before retryAt", c: &circuit.Circuit{State: circuit.Open, Version: 1, RetryAt: now.Add(time.Second)}, want: true},
		{name: "OPEN past retryAt", c: &circuit.Circuit{State: circuit.Open, Version: 1, RetryAt: now.Add(-time.Second)}},
		{name: "HALF_OPEN", c: &circuit.Circuit{State: circuit.HalfOpen, Version: 1}},
		{name: "CLOSED, FORCED_OPEN", c: &circuit.Circuit{State: circuit.Closed, Version: 1, Override: circuit.ForcedOpen, OverrideAt: now}, want: true},
		{name: "OPEN, FORCED_CLOSED", c: &circuit.Circuit{State: circuit.Open, Version: 1, RetryAt: now.Add(time.Hour), Override: circuit.ForcedClosed, OverrideAt: now}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// A table that panics on any call: Refusing must make none.
			st := store.New(noTable{}, "none")
			clk := &clock{now: now}
			c := cache.New(st, cache.Options{RefreshInterval: time.Hour, Now: clk.Now, Logger: quiet()})
			b := New(func(context.Context) (*store.Store, error) { return st, nil }, c, Options{Now: clk.Now, Logger: quiet()})
			if tc.c != nil {
				v := *tc.c
				v.ID = "svc"
				c.Put(v)
			}
			if got := b.Refusing("svc"); got != tc.want {
				t.Fatalf("Refusing: %v, want %v", got, tc.want)
			}
		})
	}
}

// A transition of the circuit after the local trip began ends it: the
// fleet has decided since.
func TestLocalTripEndsWithATransition(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	b, c := f.extension(nil)
	for range circuit.DefaultFastTripFailures {
		if _, err := b.Report(ctx, "svc", []api.Outcome{{Success: ptr(false), LatencyMs: 5}}); err != nil {
			t.Fatal(err)
		}
	}
	if a := b.Lookup(ctx, "svc"); a.Allowed {
		t.Fatal("not refused after the run")
	}
	// Transitions after the trip (the breaker's clock is the wall clock).
	later := time.Now().Add(time.Second)
	f.put(t, circuit.Circuit{ID: "svc", State: circuit.Open, Version: 1, UpdatedAt: later, RetryAt: later.Add(time.Hour)})
	f.put(t, circuit.Circuit{ID: "svc", State: circuit.Closed, Version: 2, UpdatedAt: later.Add(time.Second)})
	c.Put(f.get(t, "svc"))
	if a := b.Lookup(ctx, "svc"); !a.Allowed || a.State != circuit.Closed {
		t.Fatalf("after the fleet closed the circuit again: %+v, want allowed", a)
	}
}

// With a recovery ramp, a circuit that closed from HALF_OPEN allows a
// share of lookups that rises from 10 % to all of them over the ramp.
func TestRecoveryRampAllowsARisingShare(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	closedAt := time.Now().Add(time.Minute)
	clk := &clock{now: closedAt}
	f.put(t, circuit.Circuit{ID: "svc", State: circuit.Open, Version: 1, UpdatedAt: closedAt.Add(-time.Minute), RetryAt: closedAt.Add(-time.Second)})
	f.put(t, circuit.Circuit{ID: "svc", State: circuit.HalfOpen, Version: 2, UpdatedAt: closedAt.Add(-time.Second)})
	f.put(t, circuit.Circuit{ID: "svc", State: circuit.Closed, PreviousState: circuit.HalfOpen, Version: 3, UpdatedAt: closedAt})
	c := cache.New(f.st, cache.Options{RefreshInterval: time.Hour, MissTimeout: 5 * time.Second, Now: clk.Now, Logger: quiet()})
	pols := policy.Policies{"svc": {Passive: circuit.RateSettings{RecoveryRamp: 10 * time.Second}}}
	b := New(func(context.Context) (*store.Store, error) { return f.st, nil }, c, Options{Policies: pols, Now: clk.Now, Logger: quiet()})
	share := func() float64 {
		n := 0
		for range 2000 {
			if b.Lookup(ctx, "svc").Allowed {
				n++
			}
		}
		return float64(n) / 2000
	}
	for _, tc := range []struct {
		at       time.Duration
		lo, high float64
	}{{0, 0.06, 0.14}, {5 * time.Second, 0.5, 0.6}, {10 * time.Second, 1, 1}} {
		clk.Add(closedAt.Add(tc.at).Sub(clk.Now()))
		if got := share(); got < tc.lo || got > tc.high {
			t.Errorf("%s after the close: %.2f allowed, want %.2f..%.2f", tc.at, got, tc.lo, tc.high)
		}
	}
}

// The two rules of a local trip, on an injected clock: the count rule (a
// run of fastTripFailures failed calls refuses at once), and the time rule
// (a run of half that refuses at a lookup between lastedSpan and
// lastedWithin after its first failure). A success ends a run; only count-rule runs are
// counted for the fleet; the table is never written.
func TestLocalTripRules(t *testing.T) {
	const ms = time.Millisecond
	type step struct {
		after time.Duration // clock advance before the step
		ok    bool          // a successful call instead of a failed one
	}
	fails := func(n int, gap time.Duration) []step {
		s := make([]step, n)
		for i := range s {
			s[i].after = gap
		}
		return s
	}
	cat := func(parts ...[]step) []step {
		var s []step
		for _, p := range parts {
			s = append(s, p...)
		}
		return s
	}
	tests := []struct {
		name       string
		fastTrip   int           // 0: the default
		steps      []step        // reported one call at a time, the first at the start
		lookupWait time.Duration // after the last step
		refused    bool
		runs       int64
	}{
		{name: "count rule: 10 failures at once", steps: fails(10, 0), refused: true, runs: 1},
		{name: "count rule: 9 failures at once", steps: fails(9, 0)},
		{name: "count rule: 10 failures within 0.3 s", steps: fails(10, 30*ms), refused: true, runs: 1},
		{name: "time rule: 5 failures over 0.6 s", steps: fails(5, 150*ms), refused: true},
		{name: "time rule: 5 failures over 0.4 s, lookup 0.2 s later", steps: fails(5, 100*ms), lookupWait: 200 * ms, refused: true},
		{name: "time rule: 5 failures over 0.4 s, lookup 0.19 s later", steps: fails(5, 100*ms), lookupWait: 190 * ms},
		{name: "time rule: 5 failures over 1.6 s, lookup 0.4 s later", steps: fails(5, 400*ms), lookupWait: 400 * ms, refused: true},
		{name: "time rule: 5 failures over 1.6 s, lookup 0.41 s later", steps: fails(5, 400*ms), lookupWait: 410 * ms},
		{name: "time rule: 4 failures over 2 s", steps: fails(4, 500*ms), lookupWait: time.Second},
		{name: "time rule: 9 failures within 0.55 s", steps: fails(9, 68*ms)},
		{name: "a success resets the run", steps: cat(fails(4, 150*ms), []step{{after: 150 * ms, ok: true}}, fails(4, 150*ms)), lookupWait: 300 * ms},
		{name: "a success resets the run, then 5 failures over 0.6 s", steps: cat(fails(4, 150*ms), []step{{after: 150 * ms, ok: true}}, fails(5, 150*ms)), refused: true},
		{name: "sparse: 9 failures 1 s apart", steps: fails(9, time.Second), lookupWait: time.Second},
		{name: "sparse: 10 failures 1 s apart", steps: fails(10, time.Second), refused: true, runs: 1},
		{name: "sparse: 10 failures 30 s apart", steps: fails(10, 30*time.Second), refused: true, runs: 1},
		{name: "sparse: 9 failures 30 s apart", steps: fails(9, 30*time.Second), lookupWait: 30 * time.Second},
		{name: "fastTripFailures 20: 9 failures over 1 s", fastTrip: 20, steps: fails(9, 125*ms), lookupWait: 500 * ms},
		{name: "fastTripFailures 20: 10 failures over 1 s", fastTrip: 20, steps: fails(10, 111*ms), refused: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			clk := &clock{now: time.Now()}
			c := cache.New(f.st, cache.Options{RefreshInterval: time.Hour, MissTimeout: 5 * time.Second, Now: clk.Now, Logger: quiet()})
			var pols policy.Policies
			if tc.fastTrip > 0 {
				pols = policy.Policies{"svc": {Passive: circuit.RateSettings{FastTripFailures: tc.fastTrip}}}
			}
			b := New(func(context.Context) (*store.Store, error) { return f.st, nil }, c, Options{Policies: pols, Now: clk.Now, Logger: quiet()})
			for i, s := range tc.steps {
				if i > 0 {
					clk.Add(s.after)
				}
				// The call's own lookup: refused only after the last step.
				if a := b.Lookup(ctx, "svc"); !a.Allowed {
					t.Fatalf("refused before step %d: %+v", i, a)
				}
				if _, err := b.Report(ctx, "svc", []api.Outcome{{Success: ptr(s.ok), LatencyMs: 5}}); err != nil {
					t.Fatal(err)
				}
			}
			clk.Add(tc.lookupWait)
			b.TakeLookupStats()
			if got := b.Refusing("svc"); got != tc.refused {
				t.Fatalf("Refusing before the lookup: %v, want %v", got, tc.refused)
			}
			if b.LocalTrip("svc") != (tc.runs > 0) || len(b.TakeLookupStats()) != 0 {
				t.Fatalf("LocalTrip %v with %d runs, or Refusing counted a lookup", b.LocalTrip("svc"), tc.runs)
			}
			a := b.Lookup(ctx, "svc")
			if got := b.Refusing("svc"); got != tc.refused || b.LocalTrip("svc") != tc.refused {
				t.Fatalf("after the lookup: Refusing %v, LocalTrip %v, want both %v", got, b.LocalTrip("svc"), tc.refused)
			}
			if a.Allowed == tc.refused {
				t.Fatalf("lookup after the steps: %+v, want refused %v", a, tc.refused)
			}
			if tc.refused && a.State != circuit.Open {
				t.Fatalf("refusal %+v, want OPEN", a)
			}
			if n := b.Counted("svc").Runs; n != tc.runs {
				t.Fatalf("runs counted %d, want %d", n, tc.runs)
			}
			if got := f.get(t, "svc"); got.State != circuit.Closed || got.Version != 0 {
				t.Fatalf("table: %s v%d, want CLOSED and unwritten", got.State, got.Version)
			}
		})
	}
}

// noTable is a store.API whose every call panics (its embedded interface
// is nil).
type noTable struct{ store.API }

// errTable is a store.API whose reads fail.
type errTable struct{ store.API }

func (errTable) GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	return nil, errors.New("throttled")
}

func (errTable) BatchGetItem(context.Context, *dynamodb.BatchGetItemInput, ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error) {
	return nil, errors.New("throttled")
}

// Once reads have failed for longer than the maximum staleness, the
// failure policy decides, and Refusing says what it decides.
func TestRefusingAnExpiredValueFollowsTheFailurePolicy(t *testing.T) {
	for _, failAllow := range []bool{true, false} {
		t.Run(fmt.Sprintf("failAllow=%v", failAllow), func(t *testing.T) {
			ctx := context.Background()
			st := store.New(errTable{}, "t")
			clk := &clock{now: time.Now()}
			c := cache.New(st, cache.Options{RefreshInterval: time.Second, MaxStaleness: 10 * time.Second, MissTimeout: time.Millisecond, Now: clk.Now, Logger: quiet()})
			b := New(func(context.Context) (*store.Store, error) { return st, nil }, c, Options{FailAllow: failAllow, Now: clk.Now, Logger: quiet()})
			c.Put(circuit.Circuit{ID: "svc", State: circuit.Open, Version: 1, RetryAt: clk.Now().Add(time.Hour)})
			if !b.Refusing("svc") {
				t.Fatal("not Refusing a fresh OPEN")
			}
			for range 2 { // the first failed read, then one past the maximum staleness
				clk.Add(6 * time.Second)
				c.Get(ctx, "svc")
				if err := c.Wait(ctx); err != nil {
					t.Fatal(err)
				}
			}
			clk.Add(6 * time.Second)
			if v, _ := c.PeekValue("svc"); !v.Expired {
				t.Fatalf("value %+v, want expired", v)
			}
			if got, a := b.Refusing("svc"), b.Lookup(ctx, "svc"); got != !failAllow || a.Allowed != failAllow {
				t.Fatalf("Refusing %v, Lookup allowed %v; want %v and %v", got, a.Allowed, !failAllow, failAllow)
			}
		})
	}
}
