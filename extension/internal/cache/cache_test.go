package cache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
)

// fakeReader serves circuits from a map; it can fail or block.
type fakeReader struct {
	mu       sync.Mutex
	circuits map[string]circuit.Circuit
	err      error
	gate     chan struct{} // when non-nil, reads wait for it to close
	gets     atomic.Int64
	batches  atomic.Int64
	keys     atomic.Int64
}

func newFakeReader(cs ...circuit.Circuit) *fakeReader {
	r := &fakeReader{circuits: map[string]circuit.Circuit{}}
	for _, c := range cs {
		r.circuits[c.ID] = c
	}
	return r
}

func (r *fakeReader) set(c circuit.Circuit) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.circuits[c.ID] = c
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
	r.gets.Add(1)
	r.keys.Add(1)
	if err := r.wait(ctx); err != nil {
		return circuit.Circuit{}, false, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return circuit.Circuit{}, false, r.err
	}
	c, ok := r.circuits[id]
	if !ok {
		return circuit.New(id), false, nil
	}
	return c, true, nil
}

func (r *fakeReader) GetMany(ctx context.Context, ids []string) (map[string]circuit.Circuit, error) {
	r.batches.Add(1)
	r.keys.Add(int64(len(ids)))
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

// clock is a settable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func open(id string, version int64) circuit.Circuit {
	return circuit.Circuit{ID: id, State: circuit.Open, Version: version}
}

func newTestCache(t *testing.T, r Reader, clk *clock, o Options) *Cache {
	t.Helper()
	o.Now = clk.Now
	if o.MissTimeout == 0 {
		o.MissTimeout = time.Second
	}
	c := New(r, o)
	t.Cleanup(func() { _ = c.Wait(context.Background()) })
	return c
}

func TestPrefetchThenHitWithoutReads(t *testing.T) {
	r := newFakeReader(open("a", 3))
	clk := newClock()
	c := newTestCache(t, r, clk, Options{})
	if err := c.Prefetch(context.Background(), []string{"a", "b"}); err != nil {
		t.Fatal(err)
	}
	if got := r.batches.Load(); got != 1 {
		t.Fatalf("prefetch made %d batch reads, want 1", got)
	}
	tests := []struct {
		id      string
		state   circuit.State
		allowed bool
		version int64
	}{
		{"a", circuit.Open, false, 3},
		{"b", circuit.Closed, true, 0}, // never written: CLOSED
	}
	for _, tt := range tests {
		d := c.Lookup(context.Background(), tt.id)
		if d.State != tt.state || d.Allowed != tt.allowed || d.Circuit.Version != tt.version || !d.Known || d.Stale || d.FailMode {
			t.Errorf("Lookup(%s) = %+v, want state %s allowed %v version %d, known and fresh", tt.id, d, tt.state, tt.allowed, tt.version)
		}
	}
	if got := r.gets.Load() + r.batches.Load(); got != 1 {
		t.Errorf("lookups after prefetch read the table: %d reads in all, want 1", got)
	}
}

func TestRefreshInBackgroundAfterInterval(t *testing.T) {
	r := newFakeReader(open("a", 1))
	clk := newClock()
	c := newTestCache(t, r, clk, Options{RefreshInterval: time.Second})
	if err := c.Prefetch(context.Background(), []string{"a"}); err != nil {
		t.Fatal(err)
	}
	r.set(circuit.Circuit{ID: "a", State: circuit.Closed, Version: 2})

	clk.Advance(500 * time.Millisecond)
	if d := c.Lookup(context.Background(), "a"); d.Circuit.Version != 1 {
		t.Fatalf("refreshed before the interval: %+v", d)
	}
	clk.Advance(600 * time.Millisecond)
	// Due: this lookup answers from the cache and starts a refresh.
	if d := c.Lookup(context.Background(), "a"); d.Circuit.Version != 1 || d.Allowed {
		t.Fatalf("lookup waited for the refresh: %+v", d)
	}
	if err := c.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := c.Lookup(context.Background(), "a"); d.Circuit.Version != 2 || !d.Allowed {
		t.Fatalf("after refresh: %+v", d)
	}
}

func TestSingleFlightPerCircuit(t *testing.T) {
	r := newFakeReader(open("a", 1))
	r.gate = make(chan struct{})
	clk := newClock()
	c := newTestCache(t, r, clk, Options{MissTimeout: 5 * time.Second})
	var wg sync.WaitGroup
	results := make([]Decision, 50)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = c.Lookup(context.Background(), "a")
		}()
	}
	time.Sleep(20 * time.Millisecond)
	close(r.gate)
	wg.Wait()
	if got := r.gets.Load(); got != 1 {
		t.Errorf("50 concurrent misses made %d reads, want 1", got)
	}
	for i, d := range results {
		if !d.Known || d.Allowed {
			t.Fatalf("result %d = %+v, want the OPEN circuit", i, d)
		}
	}
}

func TestMissTimeoutAppliesFailModeAndReadContinues(t *testing.T) {
	for _, failAllow := range []bool{true, false} {
		t.Run(fmt.Sprintf("failAllow=%v", failAllow), func(t *testing.T) {
			r := newFakeReader(open("a", 7))
			r.gate = make(chan struct{})
			clk := newClock()
			c := newTestCache(t, r, clk, Options{MissTimeout: 10 * time.Millisecond, FailAllow: failAllow})
			start := time.Now()
			d := c.Lookup(context.Background(), "a")
			if waited := time.Since(start); waited > time.Second {
				t.Fatalf("lookup waited %s", waited)
			}
			if d.Known || !d.FailMode || !d.Stale || d.Allowed != failAllow {
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
			if d := c.Lookup(context.Background(), "a"); !d.Known || d.Circuit.Version != 7 {
				t.Fatalf("the abandoned read did not fill the cache: %+v", d)
			}
		})
	}
}

func TestFailureServesStaleThenFailMode(t *testing.T) {
	r := newFakeReader(open("a", 4))
	clk := newClock()
	c := newTestCache(t, r, clk, Options{RefreshInterval: time.Second, MaxStaleness: 10 * time.Second, FailAllow: true})
	if err := c.Prefetch(context.Background(), []string{"a"}); err != nil {
		t.Fatal(err)
	}
	r.fail(errors.New("throttled"))

	clk.Advance(2 * time.Second)
	c.Lookup(context.Background(), "a") // starts a refresh, which fails
	_ = c.Wait(context.Background())
	d := c.Lookup(context.Background(), "a")
	if !d.Stale || d.FailMode || d.Allowed || d.State != circuit.Open {
		t.Fatalf("within max staleness = %+v, want the stale OPEN value", d)
	}

	clk.Advance(10 * time.Second)
	c.Lookup(context.Background(), "a")
	_ = c.Wait(context.Background())
	d = c.Lookup(context.Background(), "a")
	if !d.Stale || !d.FailMode || !d.Allowed || d.State != circuit.Open {
		t.Fatalf("past max staleness = %+v, want fail mode (allow) with last state OPEN", d)
	}

	r.fail(nil)
	clk.Advance(2 * time.Second)
	c.Lookup(context.Background(), "a")
	_ = c.Wait(context.Background())
	d = c.Lookup(context.Background(), "a")
	if d.Stale || d.FailMode || d.Allowed {
		t.Fatalf("after recovery = %+v, want fresh OPEN", d)
	}
}

func TestOldValueAfterFreezeIsServedWhileRefreshing(t *testing.T) {
	r := newFakeReader(open("a", 1))
	clk := newClock()
	c := newTestCache(t, r, clk, Options{RefreshInterval: time.Second, MaxStaleness: 5 * time.Second})
	if err := c.Prefetch(context.Background(), []string{"a"}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(10 * time.Minute) // the sandbox was frozen
	// Hold the refresh this lookup starts, so the answer cannot come
	// from it: the lookup must not wait for it.
	gate := make(chan struct{})
	r.mu.Lock()
	r.gate = gate
	r.mu.Unlock()
	defer close(gate)
	d := c.Lookup(context.Background(), "a")
	if d.FailMode || d.Allowed || d.Age != 10*time.Minute {
		t.Fatalf("after a freeze = %+v, want the cached OPEN value with its age", d)
	}
}

func TestFailedMissIsNotRetriedWithinInterval(t *testing.T) {
	r := newFakeReader()
	r.fail(errors.New("unreachable"))
	clk := newClock()
	c := newTestCache(t, r, clk, Options{RefreshInterval: time.Second})
	for range 5 {
		if d := c.Lookup(context.Background(), "a"); !d.FailMode {
			t.Fatalf("lookup = %+v, want fail mode", d)
		}
	}
	if got := r.gets.Load(); got != 1 {
		t.Errorf("%d reads within one interval, want 1", got)
	}
	clk.Advance(time.Second)
	c.Lookup(context.Background(), "a")
	if got := r.gets.Load(); got != 2 {
		t.Errorf("%d reads after the interval, want 2", got)
	}
}

func TestRefreshDueBatchesPinnedAndUsedCircuits(t *testing.T) {
	r := newFakeReader(open("a", 1), open("b", 1), open("c", 1))
	clk := newClock()
	c := newTestCache(t, r, clk, Options{RefreshInterval: time.Second})
	if err := c.Prefetch(context.Background(), []string{"a"}); err != nil {
		t.Fatal(err)
	}
	c.Lookup(context.Background(), "b")
	c.Lookup(context.Background(), "c")
	_ = c.Wait(context.Background())
	clk.Advance(2 * time.Second)
	c.Lookup(context.Background(), "c") // used since its last read, and refreshed now
	_ = c.Wait(context.Background())
	before := r.keys.Load()

	c.RefreshDue() // nothing due yet except a; b was not used since its read
	_ = c.Wait(context.Background())
	if got := r.keys.Load() - before; got != 1 {
		t.Errorf("RefreshDue read %d keys, want 1 (the pinned circuit)", got)
	}

	clk.Advance(2 * time.Second)
	c.Lookup(context.Background(), "b") // refreshes b itself
	_ = c.Wait(context.Background())
	before = r.keys.Load()
	c.RefreshDue() // a is due again; b and c were not used since their reads
	_ = c.Wait(context.Background())
	if got := r.keys.Load() - before; got != 1 {
		t.Errorf("RefreshDue read %d keys, want 1", got)
	}
}

func TestEvictsLeastRecentlyUsed(t *testing.T) {
	r := newFakeReader()
	clk := newClock()
	c := newTestCache(t, r, clk, Options{MaxCircuits: 3})
	for _, id := range []string{"a", "b", "c"} {
		c.Lookup(context.Background(), id)
	}
	c.Lookup(context.Background(), "a") // a is now the most recent
	c.Lookup(context.Background(), "d") // evicts b
	if got := c.Len(); got != 3 {
		t.Fatalf("Len = %d, want 3", got)
	}
	_ = c.Wait(context.Background())
	gets := r.gets.Load()
	c.Lookup(context.Background(), "a")
	c.Lookup(context.Background(), "c")
	if r.gets.Load() != gets {
		t.Error("a or c was evicted")
	}
	c.Lookup(context.Background(), "b")
	if r.gets.Load() != gets+1 {
		t.Error("b was not evicted")
	}
}

func TestLookupManyReadsMissesInOneBatch(t *testing.T) {
	r := newFakeReader(open("a", 1), open("c", 2))
	clk := newClock()
	c := newTestCache(t, r, clk, Options{})
	ds := c.LookupMany(context.Background(), []string{"a", "b", "c"})
	if got := r.batches.Load(); got != 1 {
		t.Errorf("%d batch reads, want 1", got)
	}
	want := []struct {
		id      string
		allowed bool
	}{{"a", false}, {"b", true}, {"c", false}}
	for i, w := range want {
		if ds[i].ID != w.id || ds[i].Allowed != w.allowed || !ds[i].Known {
			t.Errorf("decision %d = %+v, want %s allowed=%v", i, ds[i], w.id, w.allowed)
		}
	}
}

func TestAdmitterDecidesKnownStates(t *testing.T) {
	r := newFakeReader(circuit.Circuit{ID: "h", State: circuit.HalfOpen, Version: 1})
	clk := newClock()
	var asked atomic.Int64
	var probes atomic.Int64
	c := newTestCache(t, r, clk, Options{Admitter: AdmitFunc(func(_ context.Context, c circuit.Circuit, now time.Time, probe bool) Admission {
		asked.Add(1)
		if probe {
			probes.Add(1)
		}
		return Admission{Allowed: c.EffectiveState(now) == circuit.Closed} // e.g. no probe lease available
	})})
	if d := c.Lookup(context.Background(), "h"); d.Allowed || d.State != circuit.HalfOpen {
		t.Fatalf("decision = %+v, want HALF_OPEN denied by the admitter", d)
	}
	if ds := c.LookupMany(context.Background(), []string{"h"}); ds[0].Allowed {
		t.Fatalf("batch decision = %+v, want denied", ds[0])
	}
	if asked.Load() != 2 || probes.Load() != 1 {
		t.Errorf("admitter asked %d times (%d may probe), want 2 (1)", asked.Load(), probes.Load())
	}
}

func TestAdmitterReplacesCircuitAndPut(t *testing.T) {
	r := newFakeReader(circuit.Circuit{ID: "o", State: circuit.Open, Version: 1})
	clk := newClock()
	c := newTestCache(t, r, clk, Options{RefreshInterval: time.Hour, Admitter: AdmitFunc(func(_ context.Context, cur circuit.Circuit, now time.Time, probe bool) Admission {
		next := cur
		next.State, next.Version = circuit.HalfOpen, cur.Version+1
		return Admission{Allowed: true, Probe: "tok", Circuit: next}
	})})
	d := c.Lookup(context.Background(), "o")
	if !d.Allowed || d.State != circuit.HalfOpen || d.Probe != "tok" || d.Circuit.Version != 2 {
		t.Fatalf("decision = %+v", d)
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

func TestOverrideApplied(t *testing.T) {
	clk := newClock()
	r := newFakeReader(circuit.Circuit{ID: "o", State: circuit.Closed, Override: circuit.ForcedOpen, OverrideUntil: clk.Now().Add(time.Minute)})
	c := newTestCache(t, r, clk, Options{RefreshInterval: time.Hour})
	if d := c.Lookup(context.Background(), "o"); d.Allowed || d.State != circuit.Open {
		t.Fatalf("forced open = %+v", d)
	}
	clk.Advance(2 * time.Minute)
	if d := c.Lookup(context.Background(), "o"); !d.Allowed || d.State != circuit.Closed {
		t.Fatalf("expired override = %+v", d)
	}
}

func TestConcurrentUse(t *testing.T) {
	r := newFakeReader(open("a", 1))
	c := New(r, Options{RefreshInterval: time.Microsecond, MaxCircuits: 8, MissTimeout: 50 * time.Millisecond})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				id := fmt.Sprintf("c%d", (g*7+i)%12)
				switch i % 4 {
				case 0:
					c.LookupMany(context.Background(), []string{id, "a"})
				case 1:
					c.RefreshDue()
				default:
					c.Lookup(context.Background(), id)
				}
				if i%50 == 0 {
					r.set(open("a", int64(i)))
				}
			}
		}()
	}
	wg.Wait()
	if err := c.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c.Len() > 8 {
		t.Errorf("Len = %d past the cap 8", c.Len())
	}
}
