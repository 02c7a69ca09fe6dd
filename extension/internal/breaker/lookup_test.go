package breaker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/cache"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
)

// fakeReader serves circuits from a map, for a cache; reads can fail, or
// wait for a gate to close.
type fakeReader struct {
	mu       sync.Mutex
	circuits map[string]circuit.Circuit
	err      error
	gate     chan struct{}
}

func newFakeReader(cs ...circuit.Circuit) *fakeReader {
	r := &fakeReader{circuits: map[string]circuit.Circuit{}}
	for _, c := range cs {
		r.circuits[c.ID] = c
	}
	return r
}

func (r *fakeReader) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.err = err
}

func (r *fakeReader) wait(ctx context.Context) error {
	r.mu.Lock()
	gate := r.gate
	r.mu.Unlock()
	if gate == nil {
		return nil
	}
	select {
	case <-gate:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *fakeReader) Get(ctx context.Context, id string) (circuit.Circuit, bool, error) {
	m, err := r.GetMany(ctx, []string{id})
	if err != nil {
		return circuit.Circuit{}, false, err
	}
	c, ok := m[id]
	if !ok {
		return circuit.New(id), false, nil
	}
	return c, true, nil
}

func (r *fakeReader) GetMany(ctx context.Context, ids []string) (map[string]circuit.Circuit, error) {
	if err := r.wait(ctx); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return nil, r.err
	}
	out := map[string]circuit.Circuit{}
	for _, id := range ids {
		if c, ok := r.circuits[id]; ok {
			out[id] = c
		}
	}
	return out, nil
}

// readOnly returns a breaker deciding from a cache over r, with the clock
// clk; its table writes fail.
func readOnly(t *testing.T, r cache.Reader, clk *clock, co cache.Options, o Options) (*Breaker, *cache.Cache) {
	t.Helper()
	co.Now, o.Now = clk.Now, clk.Now
	co.Logger, o.Logger = quiet(), quiet()
	c := cache.New(r, co)
	t.Cleanup(func() { _ = c.Wait(context.Background()) })
	noStore := func(context.Context) (*store.Store, error) { return nil, errors.New("no table in this test") }
	return New(noStore, c, o), c
}

func newClock() *clock { return &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func openCircuit(id string, version int64) circuit.Circuit {
	return circuit.Circuit{ID: id, State: circuit.Open, Version: version}
}

func TestMissTimeoutAppliesFailModeAndReadContinues(t *testing.T) {
	for _, failAllow := range []bool{true, false} {
		t.Run(fmt.Sprintf("failAllow=%v", failAllow), func(t *testing.T) {
			r := newFakeReader(openCircuit("a", 7))
			r.gate = make(chan struct{})
			b, c := readOnly(t, r, newClock(), cache.Options{MissTimeout: 10 * time.Millisecond}, Options{FailAllow: failAllow})
			start := time.Now()
			d := b.Lookup(context.Background(), "a")
			if waited := time.Since(start); waited > time.Second {
				t.Fatalf("lookup waited %s", waited)
			}
			if d.Known || !d.FailModeApplied || !d.Stale || d.Allowed != failAllow {
				t.Fatalf("miss past timeout = %+v, want fail mode allowed=%v", d, failAllow)
			}
			wantState := circuit.Open
			if failAllow {
				wantState = circuit.Closed
			}
			if d.State != wantState {
				t.Errorf("state = %s, want %s", d.State, wantState)
			}
			close(r.gate)
			if err := c.Wait(context.Background()); err != nil {
				t.Fatal(err)
			}
			if d := b.Lookup(context.Background(), "a"); !d.Known || d.Circuit.Version != 7 || d.FailModeApplied || d.Allowed {
				t.Fatalf("the abandoned read did not fill the cache: %+v", d)
			}
		})
	}
}

// Past the maximum staleness the failure policy decides, and the answer
// still says the last known state.
func TestFailModeKeepsTheLastKnownState(t *testing.T) {
	for _, failAllow := range []bool{true, false} {
		t.Run(fmt.Sprintf("failAllow=%v", failAllow), func(t *testing.T) {
			r := newFakeReader(openCircuit("a", 4))
			clk := newClock()
			b, c := readOnly(t, r, clk, cache.Options{RefreshInterval: time.Second, MaxStaleness: 10 * time.Second, MissTimeout: 5 * time.Second}, Options{FailAllow: failAllow})
			ctx := context.Background()
			if err := c.Prefetch(ctx, []string{"a"}); err != nil {
				t.Fatal(err)
			}
			r.fail(errors.New("throttled"))
			for range 3 { // reads fail from 6 s on; at 18 s for 12 s
				clk.Add(6 * time.Second)
				b.Lookup(ctx, "a") // starts a refresh, which fails
				_ = c.Wait(ctx)
			}
			for _, d := range []Answer{b.Lookup(ctx, "a"), b.LookupMany(ctx, []string{"a"})[0]} {
				if !d.Stale || !d.FailModeApplied || d.Allowed != failAllow || d.State != circuit.Open {
					t.Errorf("past max staleness = %+v, want fail mode (allowed=%v) with last state OPEN", d, failAllow)
				}
			}
		})
	}
}

// Known states are decided by the breaker: a single lookup of a HALF_OPEN
// circuit may claim a probe lease, a batch lookup never does.
func TestAdmitterDecidesKnownStates(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.put(t, circuit.Circuit{ID: "h", State: circuit.HalfOpen, Version: 1})
	f.put(t, circuit.Circuit{ID: "h2", State: circuit.HalfOpen, Version: 1})
	b, _ := f.extension(nil)
	if ds := b.LookupMany(ctx, []string{"h", "h2"}); ds[0].Allowed || ds[0].Probe != "" || ds[0].State != circuit.HalfOpen || ds[1].Allowed {
		t.Fatalf("batch decision = %+v, want HALF_OPEN denied without a probe", ds)
	}
	if d := b.Lookup(ctx, "h"); !d.Allowed || d.Probe == "" || d.State != circuit.HalfOpen {
		t.Fatalf("decision = %+v, want HALF_OPEN allowed with a probe lease", d)
	}
	// The batch lookup claimed nothing: h2's only slot is free.
	other, _ := f.extension(nil)
	if d := other.Lookup(ctx, "h2"); d.Probe == "" {
		t.Errorf("h2 after the batch lookup = %+v, want its slot free", d)
	}
	if d := other.Lookup(ctx, "h"); d.Allowed {
		t.Errorf("h while its slot is held = %+v, want denied", d)
	}
}

// A lookup that moves the circuit answers with the circuit as stored, and
// puts it in the cache, where only newer values replace it.
func TestAdmitterReplacesCircuitAndPut(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.put(t, circuit.Circuit{ID: "o", State: circuit.Open, Version: 1, OpenCount: 1, RetryAt: time.Now().Add(-time.Second)})
	b, c := f.extension(nil)
	d := b.Lookup(ctx, "o")
	if !d.Allowed || d.State != circuit.HalfOpen || d.Probe == "" || d.Circuit.Version != 2 {
		t.Fatalf("decision = %+v", d)
	}
	if got, ok := c.Peek("o"); !ok || got.Version != 2 || got.State != circuit.HalfOpen {
		t.Fatalf("Peek after the lookup = %+v %v", got, ok)
	}
	c.Put(circuit.Circuit{ID: "o", State: circuit.Closed, Version: 3})
	if got, ok := c.Peek("o"); !ok || got.Version != 3 {
		t.Fatalf("Peek after Put = %+v %v", got, ok)
	}
	c.Put(circuit.Circuit{ID: "o", State: circuit.Open, Version: 2}) // older: ignored
	if got, _ := c.Peek("o"); got.Version != 3 {
		t.Fatalf("older Put replaced version 3: %+v", got)
	}
	if _, ok := c.Peek("none"); ok {
		t.Fatal("Peek of an unknown circuit")
	}
}

func TestStatsCountHitsMissesStaleAndRefused(t *testing.T) {
	r := newFakeReader(openCircuit("a", 2))
	clk := newClock()
	b, c := readOnly(t, r, clk, cache.Options{RefreshInterval: time.Second, MaxStaleness: time.Minute, MissTimeout: 5 * time.Second}, Options{FailAllow: true})
	ctx := context.Background()
	if err := c.Prefetch(ctx, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		b.Lookup(ctx, "a") // fresh OPEN: hit, denied
	}
	b.Lookup(ctx, "b") // never seen: miss, allowed (CLOSED)
	b.Lookup(ctx, "b") // now cached: hit

	r.fail(errors.New("throttled"))
	clk.Add(2 * time.Second)
	b.Lookup(ctx, "a") // due: starts a refresh that fails; served fresh-looking value meanwhile
	_ = c.Wait(ctx)
	b.LookupMany(ctx, []string{"a"}) // the last read failed: stale, denied

	got := b.TakeLookupStats()
	if a := got["a"]; a.Denied != 5 || a.Stale < 1 || a.Hits+a.Stale != 5 || a.Misses != 0 {
		t.Errorf("stats of a = %+v, want 5 lookups, all denied, at least one stale", a)
	}
	if a := got["a"]; a.State != circuit.Open {
		t.Errorf("last state of a = %s, want OPEN", a.State)
	}
	if b := got["b"]; b != (LookupStats{Hits: 1, Misses: 1, State: circuit.Closed}) {
		t.Errorf("stats of b = %+v, want one miss and one hit, none denied", b)
	}
	if again := b.TakeLookupStats(); len(again) != 0 {
		t.Errorf("TakeLookupStats did not reset: %+v", again)
	}
}

// countingWrites counts the UpdateItem calls that reach the table.
type countingWrites struct {
	store.API
	mu     sync.Mutex
	writes int
}

func (c *countingWrites) UpdateItem(ctx context.Context, in *dynamodbUpdateItemInput, opts ...func(*dynamodbOptions)) (*dynamodbUpdateItemOutput, error) {
	c.mu.Lock()
	c.writes++
	c.mu.Unlock()
	return c.API.UpdateItem(ctx, in, opts...)
}

func (c *countingWrites) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes
}

// An environment ends a cool-down only from a value read after its own
// moment, drawn within a second after the cool-down's end: one read
// before may miss a move made elsewhere since, so the lookup denies and
// writes nothing; after a refresh past that moment the lookup moves the
// circuit to HALF_OPEN and probes.
func TestCooldownEndWaitsForAReadAfterIt(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	t0 := time.Now()
	f.put(t, circuit.Circuit{ID: "svc", State: circuit.Open, Version: 1, OpenCount: 1, RetryAt: t0.Add(10 * time.Second)})
	cw := &countingWrites{API: f.db}
	st := store.New(cw, f.st.Table()).WithLogger(quiet())
	clk := &clock{now: t0.Add(9500 * time.Millisecond)}
	c := cache.New(st, cache.Options{RefreshInterval: time.Second, MaxAge: 2 * time.Second, MissTimeout: 5 * time.Second, Now: clk.Now, Logger: quiet()})
	b := New(func(context.Context) (*store.Store, error) { return st, nil }, c, Options{Logger: quiet(), ClaimTimeout: 2 * time.Second, Now: clk.Now})
	b.SetShard(0, func() float64 { return 0.8 }) // its moment: 800 ms after the cool-down's end

	steps := []struct {
		name    string
		at      time.Duration // after t0
		refresh bool          // a refresh runs first
		allowed bool
		state   circuit.State // in the table after the lookup
	}{
		{"in the cool-down", 9500 * time.Millisecond, false, false, circuit.Open},
		{"over, value read before its end", 10200 * time.Millisecond, false, false, circuit.Open},
		{"over, value read before this environment's moment", 10600 * time.Millisecond, true, false, circuit.Open},
		{"over, value read after it", 11700 * time.Millisecond, true, true, circuit.HalfOpen},
	}
	for _, s := range steps {
		clk.Add(t0.Add(s.at).Sub(clk.Now()))
		if s.refresh {
			c.RefreshDue()
			if err := c.Wait(ctx); err != nil {
				t.Fatal(err)
			}
		}
		before := cw.count()
		a := b.Lookup(ctx, "svc")
		if a.Allowed != s.allowed || (s.allowed && a.Probe == "") {
			t.Fatalf("%s: allowed %v probe %q, want allowed %v with a probe when allowed", s.name, a.Allowed, a.Probe, s.allowed)
		}
		if got := f.get(t, "svc"); got.State != s.state {
			t.Fatalf("%s: table holds %s, want %s", s.name, got.State, s.state)
		}
		if !s.allowed && cw.count() != before {
			t.Fatalf("%s: %d table writes, want none", s.name, cw.count()-before)
		}
	}
}
