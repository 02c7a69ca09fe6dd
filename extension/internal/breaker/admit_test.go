package breaker

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/api"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/cache"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/policy"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dbfault"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dynalite"
)

// lostAnswerAPI applies the first UpdateItem it sees, then waits for the
// caller's deadline and returns its error, as when the answer of an
// applied claim arrives too late. Later calls pass.
type lostAnswerAPI struct {
	store.API
	lost atomic.Bool
}

func (l *lostAnswerAPI) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	if !l.lost.CompareAndSwap(false, true) {
		return l.API.UpdateItem(ctx, in, opts...)
	}
	if _, err := l.API.UpdateItem(context.WithoutCancel(ctx), in, opts...); err != nil {
		return nil, err
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

// halfOpenTable starts a table holding circuit "svc" HALF_OPEN at
// version 1, and returns a store on it through the API that wrap makes of
// the table's client (extension A's), a store on the client itself
// (extension B's), and the circuit as stored.
func halfOpenTable(t *testing.T, wrap func(store.API) store.API) (a, b *store.Store, half circuit.Circuit) {
	t.Helper()
	db := dynalite.Start(t)
	table := db.NewTable(t)
	a = store.New(wrap(db.Client()), table).WithLogger(quiet())
	b = store.New(db.Client(), table).WithLogger(quiet())
	ctx := context.Background()
	if err := b.Write(ctx, circuit.New("svc"), circuit.Circuit{ID: "svc", State: circuit.HalfOpen, Version: 1}, circuit.Transition); err != nil {
		t.Fatal(err)
	}
	half, _, err := b.Get(ctx, "svc")
	if err != nil {
		t.Fatal(err)
	}
	return a, b, half
}

// A claim applied by the table whose answer is lost leaves a lease that
// nobody holds. Extension A denies its caller, and gives the lease back by
// its token, so another extension can probe at once rather than after the
// probe timeout.
func TestLostClaimIsGivenBack(t *testing.T) {
	var lossy *lostAnswerAPI
	stA, stB, half := halfOpenTable(t, func(api store.API) store.API {
		lossy = &lostAnswerAPI{API: api}
		return lossy
	})
	ctx := context.Background()

	// The claim timeout also bounds the release: generous, for a loaded
	// machine.
	a := newBreaker(stA, Options{Logger: quiet(), ClaimTimeout: 500 * time.Millisecond})
	if got := a.admit(ctx, half, time.Now()); got.Allowed || got.Probe != "" {
		t.Fatalf("extension A's lost claim: %+v, want its caller denied", got)
	}
	if !lossy.lost.Load() {
		t.Fatal("the claim never reached the table")
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := a.bg.Wait(wctx); err != nil {
		t.Fatalf("giving back the lost claim: %v", err)
	}

	b := newBreaker(stB, Options{Logger: quiet(), ClaimTimeout: time.Second})
	if got := b.admit(ctx, half, time.Now()); !got.Allowed || got.Probe == "" {
		t.Errorf("extension B right after A's lost claim: %+v, want a probe (the slot is held by a claim nobody holds)", got)
	}
}

// With the table throttling writes, an OPEN circuit whose cool-down has
// ended is written at most once per busyRetry by a busy extension, each a
// single request, so the SDK's retry quota is left for everything else.
func TestCooldownEndBacksOffOnAThrottledTable(t *testing.T) {
	db := dynalite.Start(t)
	table := db.NewTable(t)
	var throttle atomic.Bool
	var throttleReads atomic.Int64
	tr := &dbfault.Transport{Fault: func(op string, _ []byte) dbfault.Action {
		switch {
		case throttle.Load() && op == "UpdateItem":
			return dbfault.Throttle
		case op == "GetItem" && throttleReads.Add(-1) >= 0:
			return dbfault.Throttle
		}
		return dbfault.Pass
	}}
	st := store.New(tr.Wrap(db.Client()), table).WithLogger(quiet())
	ctx := context.Background()
	open := circuit.Circuit{ID: "svc", State: circuit.Open, Version: 1, OpenCount: 1, RetryAt: time.Now().Add(-time.Second).Truncate(time.Millisecond)}
	if err := st.Write(ctx, circuit.New("svc"), open, circuit.Transition); err != nil {
		t.Fatal(err)
	}
	open, _, err := st.Get(ctx, "svc")
	if err != nil {
		t.Fatal(err)
	}

	const interval = 200 * time.Millisecond
	// A claim timeout a loaded machine meets: a throttled write fails at
	// once, so it does not change how often the circuit is written.
	b := newBreaker(st, Options{Logger: quiet(), ClaimTimeout: time.Second})
	b.busyRetry = interval
	throttle.Store(true)
	before := tr.Count("UpdateItem")
	start := time.Now()
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < time.Second {
				if b.admit(ctx, open, time.Now()).Allowed {
					allowed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	throttle.Store(false)
	attempts := tr.Count("UpdateItem") - before
	most := int(elapsed/interval) + 1
	if attempts < 1 || attempts > most {
		t.Errorf("%d UpdateItem requests in %s with a %s pause, want 1 to %d", attempts, elapsed.Round(time.Millisecond), interval, most)
	}
	if allowed.Load() != 0 {
		t.Errorf("%d callers allowed while the cool-down could not end", allowed.Load())
	}
	// The SDK still retries ordinary calls: a read throttled once succeeds.
	throttleReads.Store(1)
	if _, _, err := st.Get(ctx, "svc"); err != nil {
		t.Errorf("a read throttled once after the storm: %v, want the SDK to retry it", err)
	}
}

// A probe lease lasts the service's probeTimeout.
func TestLeaseLastsTheProbeTimeout(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, id := range []string{"default", "slow"} {
		f.put(t, circuit.Circuit{ID: id, State: circuit.HalfOpen, Version: 1})
	}
	ps := policy.Policies{"slow": {Passive: circuit.RateSettings{ProbeTimeout: 45 * time.Second}}}
	b := newBreaker(f.st, Options{Policies: ps, Logger: quiet(), ClaimTimeout: 2 * time.Second})
	now := time.Now()
	for id, want := range map[string]time.Duration{"default": policy.DefaultProbeTimeout, "slow": 45 * time.Second} {
		a := b.admit(ctx, f.get(t, id), now)
		l, ok := b.leases[a.Probe]
		if !ok {
			t.Fatalf("%s: no lease held: %+v", id, a)
		}
		if got := l.Until.Sub(now); got != want {
			t.Errorf("%s: lease lasts %s, want %s", id, got, want)
		}
	}
}

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
	b := newBreaker(f.st, Options{Logger: quiet(), ClaimTimeout: 2 * time.Second})
	a := b.admit(ctx, stale, time.Now())
	if a.Allowed || a.Probe != "" || a.Circuit.Override != circuit.ForcedOpen || a.Circuit.EffectiveState(time.Now()) != circuit.Open {
		t.Errorf("admission %+v: want a denial answered from the FORCED_OPEN circuit", a)
	}
}

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
				first := a.admit(ctx, stale, time.Now())
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
			got := b.admit(ctx, stale, time.Now())
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
				again := f.breaker().admit(ctx, f.get(t, "svc"), time.Now())
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
	a := b.admit(ctx, f.get(t, "svc"), time.Now())
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
	if again := f.breaker().admit(ctx, f.get(t, "svc"), time.Now()); again.Probe == "" {
		t.Errorf("slot still held after Abandon: %+v", again)
	}
}

// lateClaimAPI holds the first UpdateItem it sees (a claim) until the
// caller's deadline, then answers with that error without applying it;
// the claim lands only later, right after the next UpdateItem (the first
// release) has been answered: a request that outlived its client's
// deadline on the way to the table.
type lateClaimAPI struct {
	store.API
	calls  atomic.Int64
	held   *dynamodb.UpdateItemInput
	landed atomic.Bool
}

func (l *lateClaimAPI) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	switch l.calls.Add(1) {
	case 1:
		l.held = in
		<-ctx.Done()
		return nil, ctx.Err()
	case 2:
		out, err := l.API.UpdateItem(ctx, in, opts...)
		if _, lerr := l.API.UpdateItem(context.WithoutCancel(ctx), l.held, opts...); lerr == nil {
			l.landed.Store(true)
		}
		return out, err
	}
	return l.API.UpdateItem(ctx, in, opts...)
}

// A claim whose answer was lost may land after the first attempt to give
// it back, which then finds nothing to release. The release is tried
// again, so the slot does not stay blocked until the lease expires.
func TestLateClaimIsGivenBack(t *testing.T) {
	var late *lateClaimAPI
	stA, stB, half := halfOpenTable(t, func(api store.API) store.API {
		late = &lateClaimAPI{API: api}
		return late
	})
	ctx := context.Background()

	a := newBreaker(stA, Options{Logger: quiet(), ClaimTimeout: 500 * time.Millisecond})
	a.leaseTTL = time.Hour // blocked until it expires would fail the test
	if got := a.admit(ctx, half, time.Now()); got.Allowed || got.Probe != "" {
		t.Fatalf("extension A's lost claim: %+v, want its caller denied", got)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := a.bg.Wait(wctx); err != nil {
		t.Fatalf("giving back the late claim: %v", err)
	}
	if !late.landed.Load() {
		t.Fatal("the late claim never landed: the test did not reproduce the race")
	}
	b := newBreaker(stB, Options{Logger: quiet(), ClaimTimeout: time.Second})
	if got := b.admit(ctx, half, time.Now()); !got.Allowed || got.Probe == "" {
		t.Errorf("extension B after A's late claim was given back: %+v, want a probe", got)
	}
}

// droppedClaimAPI lets the first UpdateItem (a claim) run into its
// deadline without applying it: a claim that never lands. It closes
// released once the second (the first release) has been answered.
type droppedClaimAPI struct {
	store.API
	calls    atomic.Int64
	released chan struct{}
}

func (d *droppedClaimAPI) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	switch d.calls.Add(1) {
	case 1:
		<-ctx.Done()
		return nil, ctx.Err()
	case 2:
		defer close(d.released)
	}
	return d.API.UpdateItem(ctx, in, opts...)
}

// The release of a lost claim that never lands is tried again for a
// while, but SHUTDOWN does not wait for that: Stop ends the tries.
func TestLostClaimReleaseEndsAtStop(t *testing.T) {
	var dropped *droppedClaimAPI
	st, _, half := halfOpenTable(t, func(api store.API) store.API {
		dropped = &droppedClaimAPI{API: api, released: make(chan struct{})}
		return dropped
	})
	ctx := context.Background()
	a := newBreaker(st, Options{Logger: quiet(), ClaimTimeout: 500 * time.Millisecond})
	if got := a.admit(ctx, half, time.Now()); got.Allowed {
		t.Fatalf("lost claim: %+v, want its caller denied", got)
	}
	select { // the release has been tried, and found nothing
	case <-dropped.released:
	case <-time.After(10 * time.Second):
		t.Fatal("the lost claim was never given back")
	}
	a.Stop()
	// Well under lateClaimWindow (5 s): the tries end with Stop.
	wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := a.bg.Wait(wctx); err != nil {
		t.Fatalf("the release still ran after Stop: %v", err)
	}
}

// After a cool-down end moved a circuit to HALF_OPEN, an environment that
// took no part in the move claims a probe lease only from a moment drawn
// within claimSpread probe timeouts after it, writing nothing before; one that
// moved it claims at once, for each probe; a HALF_OPEN reached otherwise
// is claimed at once by anyone.
func TestClaimWaitsForItsTurnAfterACooldownMove(t *testing.T) {
	ctx := context.Background()
	late := func() float64 { return 0.5 } // the turn comes two probe timeouts (20 s) after the move, half of claimSpread
	tests := []struct {
		name   string
		reason string
		open   bool // the table holds OPEN past retryAt: this environment moves it
		// lookups at these offsets after t0, with whether each is a probe
		at    []time.Duration
		probe []bool
	}{
		{"not the mover", circuit.ReasonCooldownOver, false, []time.Duration{time.Second, 19 * time.Second, 21 * time.Second}, []bool{false, false, true}},
		{"moved by a check", "health check passed", false, []time.Duration{time.Second}, []bool{true}},
		{"the mover, two probes", "", true, []time.Duration{time.Second, 1100 * time.Millisecond}, []bool{true, true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			t0 := time.Now().Add(-time.Minute)
			if tc.open {
				f.put(t, circuit.Circuit{ID: "svc", State: circuit.Open, Version: 1, OpenCount: 1, RetryAt: t0, UpdatedAt: t0.Add(-30 * time.Second)})
			} else {
				f.put(t, circuit.Circuit{ID: "svc", State: circuit.HalfOpen, Version: 1, OpenCount: 1, Reason: tc.reason, UpdatedAt: t0})
			}
			cw := &countingWrites{API: f.db}
			st := store.New(cw, f.st.Table()).WithLogger(quiet())
			clk := &clock{now: t0}
			c := cache.New(st, cache.Options{RefreshInterval: time.Second, MissTimeout: 5 * time.Second, Now: clk.Now, Logger: quiet()})
			ps := policy.Policies{"svc": {Breaker: circuit.Settings{SuccessThreshold: 3}}}
			b := New(func(context.Context) (*store.Store, error) { return st, nil }, c, Options{Policies: ps, Logger: quiet(), ClaimTimeout: 2 * time.Second, Now: clk.Now})
			b.SetShard(0, late)
			for i, at := range tc.at {
				clk.Add(t0.Add(at).Sub(clk.Now()))
				before := cw.count()
				a := b.Lookup(ctx, "svc")
				if got := a.Probe != ""; got != tc.probe[i] || a.Allowed != tc.probe[i] {
					t.Fatalf("lookup %d at t0+%s: allowed %v probe %v, want a probe: %v", i, at, a.Allowed, got, tc.probe[i])
				}
				if !tc.probe[i] && cw.count() != before {
					t.Fatalf("lookup %d at t0+%s: %d table writes, want none before its turn", i, at, cw.count()-before)
				}
				if a.Probe != "" {
					if _, err := b.Report(ctx, "svc", []api.Outcome{{Success: ptr(true), ProbeToken: a.Probe}}); err != nil {
						t.Fatal(err)
					}
				}
			}
		})
	}
}
