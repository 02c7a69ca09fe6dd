package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dynalite"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/fakeclock"
)

// fakeReader serves circuits from a map; it can fail or block.
type fakeReader struct {
	mu       sync.Mutex
	circuits map[string]circuit.Circuit
	err      error
	gate     chan struct{} // when non-nil, reads wait for it to close
	hold     atomic.Int64  // this many next reads wait for their deadline
	// answered, when set, runs once a read has its answer, before the
	// cache gets it: a freeze between the two, say.
	answered func()
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
	if r.hold.Add(-1) >= 0 {
		<-ctx.Done()
		return ctx.Err()
	}
	r.hold.Add(1)
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
		c = circuit.New(id)
	}
	r.answer()
	return c, ok, nil
}

// answer runs and clears answered; r.mu is held.
func (r *fakeReader) answer() {
	if f := r.answered; f != nil {
		r.answered = nil
		f()
	}
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
	r.answer()
	return out, nil
}

// clock is a settable wall clock with a monotonic one (Uptime) beside it.
type clock = fakeclock.Clock

func newClock() *clock { return fakeclock.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) }

// waitUntil waits for cond, for at most 10 s: far more than a loaded
// machine needs.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func (r *fakeReader) setGate(gate chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gate = gate
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
		d := c.Get(context.Background(), tt.id)
		if state(d) != tt.state || allowed(d) != tt.allowed || d.Circuit.Version != tt.version || !d.Known || d.Stale || d.Expired {
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
	if d := c.Get(context.Background(), "a"); d.Circuit.Version != 1 {
		t.Fatalf("refreshed before the interval: %+v", d)
	}
	clk.Advance(600 * time.Millisecond)
	// Due: this lookup answers from the cache and starts a refresh.
	if d := c.Get(context.Background(), "a"); d.Circuit.Version != 1 || allowed(d) {
		t.Fatalf("lookup waited for the refresh: %+v", d)
	}
	if err := c.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := c.Get(context.Background(), "a"); d.Circuit.Version != 2 || !allowed(d) {
		t.Fatalf("after refresh: %+v", d)
	}
}

func TestSingleFlightPerCircuit(t *testing.T) {
	r := newFakeReader(open("a", 1))
	r.gate = make(chan struct{})
	clk := newClock()
	c := newTestCache(t, r, clk, Options{MissTimeout: 5 * time.Second})
	var wg sync.WaitGroup
	var entered atomic.Int64
	results := make([]Value, 50)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			entered.Add(1)
			results[i] = c.Get(context.Background(), "a")
		}()
	}
	// The read is held while every lookup starts; one that reaches the
	// cache after it ends finds the value, with no read either.
	waitUntil(t, "the read to start and every lookup to begin", func() bool {
		return r.gets.Load() >= 1 && entered.Load() == int64(len(results))
	})
	close(r.gate)
	wg.Wait()
	if got := r.gets.Load(); got != 1 {
		t.Errorf("50 concurrent misses made %d reads, want 1", got)
	}
	for i, d := range results {
		if !d.Known || allowed(d) {
			t.Fatalf("result %d = %+v, want the OPEN circuit", i, d)
		}
	}
}

func TestFailureServesStaleThenFailMode(t *testing.T) {
	r := newFakeReader(open("a", 4))
	clk := newClock()
	c := newTestCache(t, r, clk, Options{RefreshInterval: time.Second, MaxStaleness: 10 * time.Second})
	if err := c.Prefetch(context.Background(), []string{"a"}); err != nil {
		t.Fatal(err)
	}
	r.fail(errors.New("throttled"))

	clk.Advance(2 * time.Second)
	c.Get(context.Background(), "a") // starts a refresh, which fails
	_ = c.Wait(context.Background())
	d := c.Get(context.Background(), "a")
	if !d.Stale || d.Expired || allowed(d) || state(d) != circuit.Open {
		t.Fatalf("within max staleness = %+v, want the stale OPEN value", d)
	}
	peekAgrees(t, c, r, d)

	// The value is now 11 s old, past the maximum staleness, but reads
	// have failed for 9 s only: still the stale value.
	clk.Advance(9 * time.Second)
	c.Get(context.Background(), "a")
	_ = c.Wait(context.Background())
	d = c.Get(context.Background(), "a")
	if !d.Stale || d.Expired || allowed(d) {
		t.Fatalf("reads failing for 9s of 10s = %+v, want the stale OPEN value", d)
	}

	clk.Advance(2 * time.Second)
	c.Get(context.Background(), "a")
	_ = c.Wait(context.Background())
	d = c.Get(context.Background(), "a")
	if !d.Stale || !d.Expired || state(d) != circuit.Open {
		t.Fatalf("past max staleness = %+v, want the last state OPEN, expired", d)
	}
	peekAgrees(t, c, r, d)

	r.fail(nil)
	clk.Advance(2 * time.Second)
	c.Get(context.Background(), "a")
	_ = c.Wait(context.Background())
	d = c.Get(context.Background(), "a")
	if d.Stale || d.Expired || allowed(d) {
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
	d := c.Get(context.Background(), "a")
	if d.Expired || allowed(d) || d.Age != 10*time.Minute {
		t.Fatalf("after a freeze = %+v, want the cached OPEN value with its age", d)
	}
}

func TestFailedMissIsNotRetriedWithinInterval(t *testing.T) {
	r := newFakeReader()
	r.fail(errors.New("unreachable"))
	clk := newClock()
	c := newTestCache(t, r, clk, Options{RefreshInterval: time.Second})
	for range 5 {
		if d := c.Get(context.Background(), "a"); !d.Expired {
			t.Fatalf("lookup = %+v, want fail mode", d)
		}
	}
	if got := r.gets.Load(); got != 1 {
		t.Errorf("%d reads within one interval, want 1", got)
	}
	clk.Advance(time.Second)
	c.Get(context.Background(), "a")
	if got := r.gets.Load(); got != 2 {
		t.Errorf("%d reads after the interval, want 2", got)
	}
}

func TestRefreshDueBatchesPinnedAndUsedCircuits(t *testing.T) {
	r := newFakeReader(open("a", 1), open("b", 1), open("c", 1))
	clk := newClock()
	c := newTestCache(t, r, clk, Options{RefreshInterval: time.Second})
	ctx := context.Background()
	if err := c.Prefetch(ctx, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	refreshed := func() []string {
		t.Helper()
		_ = c.Wait(ctx)
		before := map[string]uint64{}
		for _, id := range []string{"a", "b", "c"} {
			before[id] = c.entries[id].inflightSeq
		}
		c.RefreshDue()
		_ = c.Wait(ctx)
		var ids []string
		for _, id := range []string{"a", "b", "c"} {
			if c.entries[id].inflightSeq != before[id] {
				ids = append(ids, id)
			}
		}
		return ids
	}
	c.Get(ctx, "b") // b's lookup starts its read
	c.Get(ctx, "c")
	if got := refreshed(); len(got) != 0 {
		t.Fatalf("RefreshDue within the interval read %v", got)
	}
	clk.Advance(2 * time.Second)
	c.Get(ctx, "c") // due: this lookup reads c again
	// a is pinned; b was last looked up when its read started, so it is
	// still in use; c was just read.
	if got := fmt.Sprint(refreshed()); got != "[a b]" {
		t.Errorf("RefreshDue read %s, want [a b]", got)
	}

	clk.Advance(2 * time.Second)
	c.Get(ctx, "b") // refreshes b itself
	// a is pinned; b was just read; c was looked up when its last read
	// started.
	if got := fmt.Sprint(refreshed()); got != "[a c]" {
		t.Errorf("RefreshDue read %s, want [a c]", got)
	}

	clk.Advance(2 * time.Second)
	// b's lookup started its last read; c was read by RefreshDue and not
	// looked up since: no longer in use.
	if got := fmt.Sprint(refreshed()); got != "[a b]" {
		t.Errorf("RefreshDue read %s, want [a b]", got)
	}
	clk.Advance(2 * time.Second)
	if got := fmt.Sprint(refreshed()); got != "[a]" {
		t.Errorf("RefreshDue read %s, want [a]", got)
	}
	if got := r.keys.Load(); got != 12 {
		t.Errorf("%d keys read in all, want 12", got)
	}
}

func TestEvictsLeastRecentlyUsed(t *testing.T) {
	r := newFakeReader()
	clk := newClock()
	c := newTestCache(t, r, clk, Options{MaxCircuits: 3})
	for _, id := range []string{"a", "b", "c"} {
		c.Get(context.Background(), id)
	}
	c.Get(context.Background(), "a") // a is now the most recent
	c.Get(context.Background(), "d") // evicts b
	if got := c.Len(); got != 3 {
		t.Fatalf("Len = %d, want 3", got)
	}
	_ = c.Wait(context.Background())
	gets := r.gets.Load()
	c.Get(context.Background(), "a")
	c.Get(context.Background(), "c")
	if r.gets.Load() != gets {
		t.Error("a or c was evicted")
	}
	c.Get(context.Background(), "b")
	if r.gets.Load() != gets+1 {
		t.Error("b was not evicted")
	}
}

func TestLookupManyReadsMissesInOneBatch(t *testing.T) {
	r := newFakeReader(open("a", 1), open("c", 2))
	clk := newClock()
	c := newTestCache(t, r, clk, Options{})
	ds := c.GetMany(context.Background(), []string{"a", "b", "c"})
	if got := r.batches.Load(); got != 1 {
		t.Errorf("%d batch reads, want 1", got)
	}
	want := []struct {
		id      string
		allowed bool
	}{{"a", false}, {"b", true}, {"c", false}}
	for i, w := range want {
		if ds[i].ID != w.id || allowed(ds[i]) != w.allowed || !ds[i].Known {
			t.Errorf("decision %d = %+v, want %s allowed=%v", i, ds[i], w.id, w.allowed)
		}
	}
}

func TestOverrideApplied(t *testing.T) {
	clk := newClock()
	r := newFakeReader(circuit.Circuit{ID: "o", State: circuit.Closed, Override: circuit.ForcedOpen, OverrideUntil: clk.Now().Add(time.Minute)})
	c := newTestCache(t, r, clk, Options{RefreshInterval: time.Hour})
	if d := c.Get(context.Background(), "o"); allowed(d) || state(d) != circuit.Open {
		t.Fatalf("forced open = %+v", d)
	}
	clk.Advance(2 * time.Minute)
	if d := c.Get(context.Background(), "o"); !allowed(d) || state(d) != circuit.Closed {
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
					c.GetMany(context.Background(), []string{id, "a"})
				case 1:
					c.RefreshDue()
				default:
					c.Get(context.Background(), id)
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

func TestMaxAge(t *testing.T) {
	const maxAge = 2 * time.Second
	tests := []struct {
		name    string
		pause   time.Duration // since the value was read
		invoke  bool          // an INVOKE starts the refresh before the lookup
		release time.Duration // when the held read ends; <0: after the lookup
		want    func(t *testing.T, d Value, waited time.Duration)
	}{
		{
			name: "older than the maximum age: waits for the refresh started by INVOKE", pause: 10 * time.Second, invoke: true, release: 20 * time.Millisecond,
			want: func(t *testing.T, d Value, waited time.Duration) {
				if d.Circuit.Version != 2 || state(d) != circuit.Open || allowed(d) || d.Stale || d.Expired || !d.Waited || d.Age != 0 {
					t.Errorf("decision = %+v, want the fresh OPEN v2, waited for, age 0", d)
				}
			},
		},
		{
			name: "older than the maximum age: the lookup starts the refresh and waits", pause: 10 * time.Second, release: 20 * time.Millisecond,
			want: func(t *testing.T, d Value, waited time.Duration) {
				if d.Circuit.Version != 2 || allowed(d) || d.Stale || !d.Waited {
					t.Errorf("decision = %+v, want the fresh OPEN v2", d)
				}
			},
		},
		{
			name: "refresh slower than the miss timeout: the old value, marked stale", pause: 10 * time.Second, invoke: true, release: -1,
			want: func(t *testing.T, d Value, waited time.Duration) {
				if d.Circuit.Version != 1 || !allowed(d) || !d.Stale || d.Expired || !d.Waited || d.Age != 10*time.Second {
					t.Errorf("decision = %+v, want the old CLOSED v1, stale, age 10s", d)
				}
				if waited < 50*time.Millisecond || waited > 4*time.Second {
					t.Errorf("waited %s, want the miss timeout (50ms)", waited)
				}
			},
		},
		{
			name: "younger than the maximum age: answers at once while the refresh runs", pause: 1500 * time.Millisecond, invoke: true, release: -1,
			want: func(t *testing.T, d Value, waited time.Duration) {
				if d.Circuit.Version != 1 || !allowed(d) || d.Stale || d.Waited {
					t.Errorf("decision = %+v, want the cached CLOSED v1 as a plain hit", d)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newFakeReader(circuit.Circuit{ID: "a", State: circuit.Closed, Version: 1})
			clk := newClock()
			// Generous when the read is released in time, so that a loaded
			// machine does not turn a wait into a timeout.
			miss := 5 * time.Second
			if tt.release < 0 {
				miss = 50 * time.Millisecond
			}
			c := newTestCache(t, r, clk, Options{RefreshInterval: time.Second, MaxAge: maxAge, MissTimeout: miss})
			ctx := context.Background()
			if err := c.Prefetch(ctx, []string{"a"}); err != nil {
				t.Fatal(err)
			}
			r.set(open("a", 2)) // the circuit opened meanwhile
			gate := make(chan struct{})
			r.setGate(gate)
			clk.Advance(tt.pause)
			if tt.invoke {
				c.RefreshDue()
			}
			if tt.release >= 0 {
				time.AfterFunc(tt.release, func() { close(gate) })
			}
			start := time.Now()
			d := c.Get(ctx, "a")
			waited := time.Since(start)
			if tt.release < 0 {
				close(gate)
			}
			tt.want(t, d, waited)
			_ = c.Wait(ctx)
			if got := r.gets.Load() + r.batches.Load(); got != 2 {
				t.Errorf("%d reads, want 2 (prefetch and one refresh)", got)
			}
		})
	}
}

// Why the default maximum age is twice the refresh interval: a sandbox
// invoked at least that often never waits, since each INVOKE past the
// refresh interval refreshes its circuits; with a maximum age equal to the
// interval, even a busy sandbox would wait once per refresh.
func TestMaxAgeWaitsByInvocationGap(t *testing.T) {
	tests := []struct {
		maxAge    time.Duration
		gap       time.Duration // between invocations
		wantWaits int           // of 20 invocations
	}{
		{2 * time.Second, 100 * time.Millisecond, 0},
		{2 * time.Second, 600 * time.Millisecond, 0},
		{2 * time.Second, 1500 * time.Millisecond, 0},
		{2 * time.Second, 2 * time.Second, 0},
		{2 * time.Second, 2500 * time.Millisecond, 20},
		{2 * time.Second, 10 * time.Second, 20},
		{time.Second, 600 * time.Millisecond, 10}, // every other invocation
		{time.Second, 1500 * time.Millisecond, 20},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("maxAge=%s/gap=%s", tt.maxAge, tt.gap), func(t *testing.T) {
			r := newFakeReader(open("a", 1))
			clk := newClock()
			c := newTestCache(t, r, clk, Options{RefreshInterval: time.Second, MaxAge: tt.maxAge})
			ctx := context.Background()
			if err := c.Prefetch(ctx, []string{"a"}); err != nil {
				t.Fatal(err)
			}
			waits := 0
			for range 20 {
				clk.Advance(tt.gap)
				// The lookup starts the refresh when due, as the INVOKE
				// would a moment earlier (leaving that out keeps the count
				// free of the race between the two).
				if d := c.Get(ctx, "a"); d.Waited {
					waits++
				}
				_ = c.Wait(ctx) // the sandbox freezes once the reads are done
			}
			if waits != tt.wantWaits {
				t.Errorf("%d of 20 invocations waited, want %d", waits, tt.wantWaits)
			}
		})
	}
}

// When the refresh of a value older than the maximum age fails, the stale
// and failure-policy rules apply as before, and lookups within the refresh
// interval do not wait again.
func TestMaxAgeFailedRefresh(t *testing.T) {
	r := newFakeReader(open("a", 1))
	clk := newClock()
	c := newTestCache(t, r, clk, Options{RefreshInterval: time.Second, MaxAge: 2 * time.Second, MaxStaleness: 5 * time.Second, MissTimeout: 5 * time.Second})
	ctx := context.Background()
	if err := c.Prefetch(ctx, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	r.fail(errors.New("throttled"))
	clk.Advance(time.Minute)
	if d := c.Get(ctx, "a"); !d.Waited || !d.Stale || d.Expired || allowed(d) || d.Age != time.Minute {
		t.Fatalf("failed refresh = %+v, want the stale OPEN value after waiting", d)
	}
	if d := c.Get(ctx, "a"); d.Waited || !d.Stale || d.Expired || allowed(d) {
		t.Fatalf("next lookup = %+v, want the stale OPEN value at once", d)
	}
	if got := r.gets.Load(); got != 2 {
		t.Errorf("%d reads, want 2", got)
	}
	clk.Advance(6 * time.Second)
	c.Get(ctx, "a") // due again: waits for a read that fails too
	if d := c.Get(ctx, "a"); !d.Expired {
		t.Errorf("reads failing for 6s of 5s = %+v, want it expired (the failure policy decides)", d)
	}
}

// Every lookup of a circuit whose value is too old waits for the same
// read, and all get its answer.
func TestMaxAgeConcurrentLookupsShareOneRead(t *testing.T) {
	r := newFakeReader(circuit.Circuit{ID: "a", State: circuit.Closed, Version: 1})
	clk := newClock()
	c := newTestCache(t, r, clk, Options{RefreshInterval: time.Second, MaxAge: 2 * time.Second, MissTimeout: 5 * time.Second})
	ctx := context.Background()
	if err := c.Prefetch(ctx, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	r.set(open("a", 2))
	gate := make(chan struct{})
	r.setGate(gate)
	clk.Advance(time.Minute)
	before := r.gets.Load() + r.batches.Load()
	results := make([]Value, 40)
	var wg sync.WaitGroup
	var entered atomic.Int64
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			entered.Add(1)
			if i%2 == 0 {
				results[i] = c.Get(ctx, "a")
			} else {
				results[i] = c.GetMany(ctx, []string{"a"})[0]
			}
		}()
	}
	// The read is held while every lookup starts: the lookup that
	// started it waits for it, at least.
	waitUntil(t, "the read to start and every lookup to begin", func() bool {
		return r.gets.Load()+r.batches.Load() > before && entered.Load() == int64(len(results))
	})
	close(gate)
	wg.Wait()
	if got := r.gets.Load() + r.batches.Load() - before; got != 1 {
		t.Errorf("40 concurrent lookups of an old value made %d reads, want 1", got)
	}
	// A goroutine scheduled only after the read ended finds the fresh
	// value: a plain hit.
	for i, d := range results {
		if d.Circuit.Version != 2 || allowed(d) || d.Stale {
			t.Fatalf("result %d = %+v, want the fresh OPEN v2", i, d)
		}
	}
	var waits, hits, stale int
	for _, d := range results {
		switch {
		case d.Stale:
			stale++
		case d.Waited:
			waits++
		case !d.Missed:
			hits++
		}
	}
	if waits+hits != 40 || waits == 0 || stale != 0 {
		t.Errorf("%d waits, %d hits, %d stale; want 40 waits or hits, and waits", waits, hits, stale)
	}
}

// A read in flight when the sandbox freezes ends on thaw with its deadline
// passed. That is no answer, not a failure of the table: the read is made
// again at once and the lookup answers the known or the fresh state, never
// the failure policy.
func TestReadCutByFreeze(t *testing.T) {
	for _, maxAge := range []time.Duration{0, 2 * time.Second} {
		t.Run(fmt.Sprintf("maxAge=%s", maxAge), func(t *testing.T) {
			r := newFakeReader(open("a", 1))
			clk := newClock()
			c := newTestCache(t, r, clk, Options{
				RefreshInterval: time.Second, MaxStaleness: 30 * time.Second, MaxAge: maxAge,
				FetchTimeout: 200 * time.Millisecond, MissTimeout: 5 * time.Second,
			})
			ctx := context.Background()
			if err := c.Prefetch(ctx, []string{"a"}); err != nil {
				t.Fatal(err)
			}
			r.set(open("a", 2))
			clk.Advance(2 * time.Second)
			r.hold.Store(1)
			c.RefreshDue()           // the INVOKE's read; the function ends and the sandbox freezes
			clk.Advance(time.Minute) // frozen for 60 s: the read's deadline passes meanwhile
			d := c.Get(ctx, "a")     // the next invocation, on thaw
			if d.Expired || allowed(d) || state(d) != circuit.Open || !d.Known {
				t.Fatalf("after a freeze = %+v, want the known OPEN state", d)
			}
			if maxAge > 0 && (d.Circuit.Version != 2 || d.Stale || !d.Waited) {
				t.Errorf("with a maximum age = %+v, want the fresh v2 from the read made again", d)
			}
			_ = c.Wait(ctx)
			if d := c.Get(ctx, "a"); d.Expired || d.Stale || d.Circuit.Version != 2 {
				t.Errorf("after the read made again = %+v, want the fresh OPEN v2", d)
			}
			if got := r.gets.Load() - 1; got != 2 {
				t.Errorf("%d reads after the prefetch, want 2 (the cut one and its retry)", got)
			}
		})
	}
}

// A read cut by its deadline while the process ran is a failure of the
// table: stale, and not retried before the refresh interval.
func TestReadDeadlineWithoutFreezeIsAFailure(t *testing.T) {
	r := newFakeReader(open("a", 1))
	clk := newClock()
	c := newTestCache(t, r, clk, Options{RefreshInterval: time.Second, MaxStaleness: 30 * time.Second, FetchTimeout: 20 * time.Millisecond})
	ctx := context.Background()
	if err := c.Prefetch(ctx, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Second)
	r.hold.Store(1)
	c.RefreshDue()
	_ = c.Wait(ctx)
	d := c.Get(ctx, "a")
	if !d.Stale || d.Expired || allowed(d) {
		t.Fatalf("after a slow read = %+v, want the stale OPEN value", d)
	}
	if got := r.gets.Load() - 1; got != 1 {
		t.Errorf("%d reads after the prefetch, want 1: a failed read waits for the refresh interval", got)
	}
}

// The cache never goes backwards: an older read landing after a newer
// value keeps the newer one, by version, override time, then the order in
// which reads started and values came in.
func TestCacheNeverGoesBackwards(t *testing.T) {
	at := newClock().Now()
	plain := circuit.Circuit{ID: "a", State: circuit.Closed, Version: 3}
	forced := plain
	forced.Override, forced.OverrideReason, forced.OverrideAt = circuit.ForcedOpen, "maintenance", at
	tests := []struct {
		name      string
		table     circuit.Circuit // what the read started before the Put returns
		put       circuit.Circuit
		wantState circuit.State
		wantVer   int64
	}{
		{"older version read after a trip", plain, circuit.Circuit{ID: "a", State: circuit.Open, Version: 4, RetryAt: at.Add(time.Minute)}, circuit.Open, 4},
		{"older read after a newer override", plain, forced, circuit.Open, 3},
		{"newer version read after a Put", circuit.Circuit{ID: "a", State: circuit.HalfOpen, Version: 5}, circuit.Circuit{ID: "a", State: circuit.Open, Version: 4}, circuit.HalfOpen, 5},
		{"later override read after a Put", func() circuit.Circuit {
			v := forced
			v.Override, v.OverrideAt = circuit.ForcedClosed, at.Add(time.Second)
			return v
		}(), forced, circuit.Closed, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			r := newFakeReader(plain)
			c := newTestCache(t, r, clk, Options{RefreshInterval: time.Second})
			ctx := context.Background()
			if err := c.Prefetch(ctx, []string{"a"}); err != nil {
				t.Fatal(err)
			}
			gate := make(chan struct{})
			r.setGate(gate)
			r.set(tt.table)
			clk.Advance(2 * time.Second)
			c.RefreshDue() // read starts
			c.Put(tt.put)  // a write of this extension lands first
			close(gate)
			_ = c.Wait(ctx)
			got, _ := c.Peek("a")
			if d := c.Get(ctx, "a"); got.Version != tt.wantVer || state(d) != tt.wantState {
				t.Errorf("cached v%d, answer %s; want v%d %s", got.Version, state(d), tt.wantVer, tt.wantState)
			}
		})
	}

	t.Run("a read started after the Put replaces it", func(t *testing.T) {
		clk := newClock()
		r := newFakeReader(plain) // the operator cleared the override meanwhile
		c := newTestCache(t, r, clk, Options{RefreshInterval: time.Second})
		ctx := context.Background()
		c.Put(forced)
		clk.Advance(2 * time.Second)
		c.Get(ctx, "a") // due: starts a read
		_ = c.Wait(ctx)
		if d := c.Get(ctx, "a"); state(d) != circuit.Closed || !allowed(d) {
			t.Errorf("after the read = %+v, want CLOSED with the override gone", d)
		}
	})
	t.Run("a lagging read started after the Put keeps the version", func(t *testing.T) {
		tripped := circuit.Circuit{ID: "a", State: circuit.Open, Version: 4, RetryAt: at.Add(time.Minute)}
		for _, tt := range []struct {
			name     string
			table    circuit.Circuit // a read copy behind the trip this extension wrote
			wantOver circuit.Override
			want     circuit.State
		}{
			{"no override", plain, "", circuit.Open},
			{"override set meanwhile", forced, circuit.ForcedOpen, circuit.Open},
			{"forced closed meanwhile", func() circuit.Circuit {
				v := forced
				v.Override = circuit.ForcedClosed
				return v
			}(), circuit.ForcedClosed, circuit.Closed},
		} {
			t.Run(tt.name, func(t *testing.T) {
				clk := newClock()
				r := newFakeReader(tt.table)
				c := newTestCache(t, r, clk, Options{RefreshInterval: time.Second})
				ctx := context.Background()
				c.Put(tripped)
				clk.Advance(2 * time.Second)
				c.Get(ctx, "a") // due: starts a read
				_ = c.Wait(ctx)
				got, _ := c.Peek("a")
				if d := c.Get(ctx, "a"); got.Version != 4 || got.State != circuit.Open || got.Override != tt.wantOver || state(d) != tt.want {
					t.Errorf("after a lagging read: cached v%d %s override %q, answer %s; want v4 OPEN override %q, answer %s",
						got.Version, got.State, got.Override, state(d), tt.wantOver, tt.want)
				}
			})
		}
	})
	t.Run("an earlier override put after a later one", func(t *testing.T) {
		clk := newClock()
		c := newTestCache(t, newFakeReader(), clk, Options{})
		later := forced
		later.Override, later.OverrideAt = circuit.ForcedClosed, at.Add(time.Second)
		c.Put(later)
		c.Put(forced)
		if got, _ := c.Peek("a"); got.Override != circuit.ForcedClosed {
			t.Errorf("cached override %s, want the later FORCED_CLOSED", got.Override)
		}
	})
}

// BenchmarkLookupHit is the hot path: a fresh cached value.
func BenchmarkLookupHit(b *testing.B) {
	for _, maxAge := range []time.Duration{0, 2 * time.Second} {
		b.Run(fmt.Sprintf("maxAge=%s", maxAge), func(b *testing.B) {
			c := New(newFakeReader(open("a", 1)), Options{RefreshInterval: time.Hour, MaxAge: maxAge})
			ctx := context.Background()
			if err := c.Prefetch(ctx, []string{"a"}); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if d := c.Get(ctx, "a"); allowed(d) {
					b.Fatal(d)
				}
			}
		})
	}
}

// An unreadable circuit item in a batched read leaves the other circuits
// of the batch fresh; only its own circuit falls to the failure policy.
func TestUnreadableItemFailsOnlyItsCircuit(t *testing.T) {
	srv := dynalite.Start(t)
	table := srv.NewTable(t)
	st := store.New(srv.Client(), table)
	ctx := context.Background()
	for _, id := range []string{"a", "b"} {
		if err := st.Write(ctx, circuit.New(id), circuit.Circuit{ID: id, State: circuit.Open, Version: 1}, circuit.Transition); err != nil {
			t.Fatal(err)
		}
	}
	_, err := srv.Client().PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: map[string]types.AttributeValue{
		"id":      &types.AttributeValueMemberS{Value: "bad"},
		"state":   &types.AttributeValueMemberS{Value: "DISABLED"},
		"version": &types.AttributeValueMemberN{Value: "1"},
	}})
	if err != nil {
		t.Fatal(err)
	}

	// A generous miss timeout: the read is answered in time on a loaded
	// machine too, and the test is about which circuits it fails.
	c := New(st, Options{MissTimeout: 10 * time.Second, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	got := c.GetMany(ctx, []string{"a", "b", "bad", "never-written"})
	for _, d := range got {
		switch d.ID {
		case "a", "b":
			if d.Stale || d.Expired || state(d) != circuit.Open || allowed(d) {
				t.Errorf("%s: %+v, want a fresh OPEN answer", d.ID, d)
			}
		case "never-written":
			if d.Stale || d.Expired || state(d) != circuit.Closed || !allowed(d) {
				t.Errorf("%s: %+v, want a fresh CLOSED answer", d.ID, d)
			}
		case "bad":
			if !d.Expired {
				t.Errorf("%s: %+v, want it expired: the failure policy decides", d.ID, d)
			}
		}
	}
}

// An unreadable circuit item (an attached function may write it) does not
// void an operator override: while one is in force the circuit is a fresh
// value that the override decides, read alone or in a batch.
func TestUnreadableItemUnderAnOverride(t *testing.T) {
	srv := dynalite.Start(t)
	table := srv.NewTable(t)
	st := store.New(srv.Client(), table).WithLogger(slog.New(slog.NewJSONHandler(io.Discard, nil)))
	ctx := context.Background()
	if _, err := st.SetOverride(ctx, "bad", circuit.ForcedOpen, "incident", time.Time{}, time.Now()); err != nil {
		t.Fatal(err)
	}
	// An attached function breaks the state (it may UpdateItem the item,
	// never replace it, nor touch the override).
	_, err := srv.Client().UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: aws.String(table),
		Key:              map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: "bad"}},
		UpdateExpression: aws.String("SET #s = :s"), ExpressionAttributeNames: map[string]string{"#s": "state"},
		ExpressionAttributeValues: map[string]types.AttributeValue{":s": &types.AttributeValueMemberS{Value: "BOGUS"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, batch := range []bool{false, true} {
		c := New(st, Options{MissTimeout: 10 * time.Second, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
		var d Value
		if batch {
			d = c.GetMany(ctx, []string{"bad", "other"})[0]
		} else {
			d = c.Get(ctx, "bad")
		}
		if d.Stale || d.Expired || !d.Known || allowed(d) || d.Circuit.ActiveOverride(d.At) != circuit.ForcedOpen {
			t.Errorf("batch %v: %+v, want a fresh value that FORCED_OPEN denies", batch, d)
		}
	}
}

// allowed and state read a value as a caller deciding by its state alone
// would: OPEN denies, CLOSED and HALF_OPEN allow, an active override
// decides.
func allowed(v Value) bool { return v.Circuit.Allowed(v.At) }

func state(v Value) circuit.State { return v.Circuit.EffectiveState(v.At) }

// A read answered just before the sandbox froze, and taken in only on
// thaw, is as old as the table state it shows: its age counts from the
// read's start. With a maximum age of 1 s and a 1.9 s freeze, a circuit
// that opened during the freeze is not answered CLOSED as fresh.
func TestAgeCountsFromTheReadsStart(t *testing.T) {
	r := newFakeReader(circuit.Circuit{ID: "a", State: circuit.Closed, Version: 1})
	clk := newClock()
	c := newTestCache(t, r, clk, Options{RefreshInterval: time.Second, MaxAge: time.Second, MissTimeout: 5 * time.Second})
	ctx := context.Background()
	if err := c.Prefetch(ctx, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(1100 * time.Millisecond)
	// The INVOKE's read has its answer (CLOSED), then the sandbox freezes
	// for 1.9 s; the circuit opens meanwhile.
	r.answered = func() {
		r.circuits["a"] = open("a", 2)
		clk.Advance(1900 * time.Millisecond)
	}
	c.RefreshDue()
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Peek("a"); got.Version != 1 {
		t.Fatalf("cached v%d, want the CLOSED v1 of the frozen read", got.Version)
	}
	d := c.Get(ctx, "a") // on thaw: the next invocation's lookup
	if state(d) == circuit.Closed && !d.Stale {
		t.Fatalf("after the freeze = %+v, want no fresh CLOSED answer", d)
	}
	if d.Circuit.Version != 2 || !d.Waited || d.Stale {
		t.Errorf("after the freeze = %+v, want the OPEN v2 of a read waited for", d)
	}
}

// Put keeps the override the cache knows unless the value put carries a
// newer one, whatever the versions: a fast trip's value carries the
// override fields of its own earlier read.
func TestPutKeepsANewerCachedOverride(t *testing.T) {
	at := newClock().Now()
	forced := func(o circuit.Override, setAt time.Time) circuit.Circuit {
		return circuit.Circuit{ID: "a", State: circuit.Closed, Version: 3, Override: o, OverrideReason: "ops", OverrideAt: setAt}
	}
	tripped := circuit.Circuit{ID: "a", State: circuit.Open, Version: 4, RetryAt: at.Add(time.Minute)}
	trippedOverOld := tripped
	trippedOverOld.Override, trippedOverOld.OverrideReason, trippedOverOld.OverrideAt = circuit.ForcedClosed, "old", at.Add(-time.Hour)
	trippedOverNew := tripped
	trippedOverNew.Override, trippedOverNew.OverrideReason, trippedOverNew.OverrideAt = circuit.ForcedClosed, "newer", at.Add(time.Second)
	tests := []struct {
		name       string
		cached     circuit.Circuit
		put        circuit.Circuit
		wantState  circuit.State // the cached record's
		wantVer    int64
		wantOver   circuit.Override
		wantReason string
	}{
		{"a higher version without the override", forced(circuit.ForcedOpen, at), tripped, circuit.Open, 4, circuit.ForcedOpen, "ops"},
		{"a higher version with an older override", forced(circuit.ForcedOpen, at), trippedOverOld, circuit.Open, 4, circuit.ForcedOpen, "ops"},
		{"a higher version with a newer override", forced(circuit.ForcedOpen, at), trippedOverNew, circuit.Open, 4, circuit.ForcedClosed, "newer"},
		{"no override cached", circuit.Circuit{ID: "a", State: circuit.Closed, Version: 3}, tripped, circuit.Open, 4, circuit.NoOverride, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			c := newTestCache(t, newFakeReader(tt.cached), clk, Options{RefreshInterval: time.Hour})
			ctx := context.Background()
			if err := c.Prefetch(ctx, []string{"a"}); err != nil {
				t.Fatal(err)
			}
			c.Put(tt.put)
			got, _ := c.Peek("a")
			if got.State != tt.wantState || got.Version != tt.wantVer || got.Override != tt.wantOver || got.OverrideReason != tt.wantReason {
				t.Errorf("cached %s v%d override %q (%q); want %s v%d override %q (%q)",
					got.State, got.Version, got.Override, got.OverrideReason, tt.wantState, tt.wantVer, tt.wantOver, tt.wantReason)
			}
			if tt.wantOver == circuit.ForcedOpen && allowed(c.Get(ctx, "a")) {
				t.Error("the operator's FORCED_OPEN was lost: the circuit is allowed")
			}
		})
	}
}

// A cache restored from a snapshot, the wall clock days ahead of the
// monotonic one, is never served as fresh: every value counts as older
// than the maximum age, with or without one, and is read again before it
// is answered; ordinary pauses, both clocks running, change nothing.
func TestRestoredCacheIsNeverServedAsFresh(t *testing.T) {
	tests := []struct {
		name    string
		maxAge  time.Duration
		restore time.Duration // the wall clock alone
		advance time.Duration // both clocks
		slow    bool          // the read after the restore outlasts the miss timeout
		want    func(t *testing.T, d Value)
	}{
		{name: "restored, maximum age 2s: waits for the table", maxAge: 2 * time.Second, restore: 72 * time.Hour,
			want: func(t *testing.T, d Value) {
				if d.Circuit.Version != 2 || !d.Waited || d.Stale || state(d) != circuit.Open {
					t.Errorf("= %+v, want the OPEN v2 read after the restore, waited for", d)
				}
			}},
		{name: "restored, no maximum age: waits all the same", restore: 72 * time.Hour,
			want: func(t *testing.T, d Value) {
				if d.Circuit.Version != 2 || !d.Waited || d.Stale {
					t.Errorf("= %+v, want the OPEN v2 read after the restore, waited for", d)
				}
			}},
		{name: "restored, the read too slow: the old value, stale, with its true age", maxAge: 2 * time.Second, restore: 72 * time.Hour, slow: true,
			want: func(t *testing.T, d Value) {
				if d.Circuit.Version != 1 || !d.Stale || d.Age < 72*time.Hour {
					t.Errorf("= %+v, want the CLOSED v1 marked stale, at least 72h old", d)
				}
			}},
		{name: "a long freeze, both clocks running, no maximum age: the old value at once", advance: 72 * time.Hour,
			want: func(t *testing.T, d Value) {
				if d.Circuit.Version != 1 || d.Waited || d.Stale || d.Age != 72*time.Hour+500*time.Millisecond {
					t.Errorf("= %+v, want the cached CLOSED v1 at once, 72h old", d)
				}
			}},
		{name: "the wall clock adjusted by less than RestoreDrift: no restore", maxAge: 2 * time.Second, restore: RestoreDrift / 2,
			want: func(t *testing.T, d Value) {
				if d.Circuit.Version != 1 || d.Waited || d.Stale {
					t.Errorf("= %+v, want the cached CLOSED v1 as a plain hit", d)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newFakeReader(circuit.Circuit{ID: "a", State: circuit.Closed, Version: 1})
			clk := newClock()
			miss := 5 * time.Second
			if tt.slow {
				miss = 50 * time.Millisecond
			}
			c := newTestCache(t, r, clk, Options{RefreshInterval: time.Second, MaxAge: tt.maxAge, MissTimeout: miss, Uptime: clk.Uptime})
			ctx := context.Background()
			if err := c.Prefetch(ctx, []string{"a"}); err != nil { // INIT, before the snapshot
				t.Fatal(err)
			}
			r.set(open("a", 2)) // the circuit opened while the snapshot waited
			gate := make(chan struct{})
			if tt.slow {
				r.setGate(gate)
			}
			clk.Restore(tt.restore)
			clk.Advance(tt.advance)
			clk.Advance(500 * time.Millisecond) // within the refresh interval
			d := c.Get(ctx, "a")
			close(gate)
			tt.want(t, d)
		})
	}
}

// seenAtRead is a Reader that records, at each read, how many times
// Options.OnRestore had been called.
type seenAtRead struct {
	*fakeReader
	hooks *atomic.Int64
	mu    sync.Mutex
	seen  []int64
}

func (r *seenAtRead) Get(ctx context.Context, id string) (circuit.Circuit, bool, error) {
	r.mu.Lock()
	r.seen = append(r.seen, r.hooks.Load())
	r.mu.Unlock()
	return r.fakeReader.Get(ctx, id)
}

// OnRestore is called once per detected restore, before the reads that
// the restore makes due start, and never for an ordinary pause.
func TestOnRestoreRunsBeforeTheRestoresReads(t *testing.T) {
	tests := []struct {
		name      string
		restore   time.Duration // the wall clock alone
		advance   time.Duration // both clocks
		wantHooks int64
		wantSeen  []int64 // OnRestore calls seen by each read after the pause
	}{
		{name: "restored from a snapshot", restore: 72 * time.Hour, wantHooks: 1, wantSeen: []int64{1}},
		{name: "a long freeze, both clocks running", advance: 72 * time.Hour, wantSeen: []int64{0}},
		{name: "the wall clock adjusted by less than RestoreDrift", restore: RestoreDrift / 2, advance: 2 * time.Second, wantSeen: []int64{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hooks atomic.Int64
			r := &seenAtRead{fakeReader: newFakeReader(circuit.Circuit{ID: "a", State: circuit.Closed, Version: 1}), hooks: &hooks}
			clk := newClock()
			c := newTestCache(t, r, clk, Options{RefreshInterval: time.Second, MaxAge: 2 * time.Second, Uptime: clk.Uptime,
				OnRestore: func() { hooks.Add(1) }})
			ctx := context.Background()
			c.Get(ctx, "a") // the first read, before the snapshot
			clk.Restore(tt.restore)
			clk.Advance(tt.advance)
			d := c.Get(ctx, "a")
			if err := c.Wait(ctx); err != nil {
				t.Fatal(err)
			}
			clk.Advance(500 * time.Millisecond) // a later look, clocks together
			c.Get(ctx, "a")
			if got := hooks.Load(); got != tt.wantHooks {
				t.Errorf("OnRestore called %d times, want %d", got, tt.wantHooks)
			}
			r.mu.Lock()
			seen := r.seen[1:]
			r.mu.Unlock()
			if fmt.Sprint(seen) != fmt.Sprint(tt.wantSeen) {
				t.Errorf("OnRestore calls seen by the reads after the pause = %v, want %v (the Get: %+v)", seen, tt.wantSeen, d)
			}
		})
	}
}

// peekAgrees checks that PeekValue answers as the Get that returned d,
// at the same instant, and that it starts no read.
func peekAgrees(t *testing.T, c *Cache, r *fakeReader, d Value) {
	t.Helper()
	_ = c.Wait(context.Background())
	before := r.gets.Load() + r.batches.Load()
	p, ok := c.PeekValue(d.ID)
	if !ok || p.Stale != d.Stale || p.Expired != d.Expired || p.Circuit.Version != d.Circuit.Version || p.Age != d.Age {
		t.Fatalf("PeekValue = %+v (%v), Get = %+v", p, ok, d)
	}
	_ = c.Wait(context.Background())
	if after := r.gets.Load() + r.batches.Load(); after != before {
		t.Fatalf("PeekValue started %d reads, want none", after-before)
	}
}

// PeekValue of a circuit the cache does not hold reports false, and
// neither reads nor keeps an entry.
func TestPeekValueUnknown(t *testing.T) {
	r := newFakeReader(open("a", 1))
	c := newTestCache(t, r, newClock(), Options{})
	if v, ok := c.PeekValue("a"); ok {
		t.Fatalf("PeekValue of an unread circuit = %+v, want false", v)
	}
	_ = c.Wait(context.Background())
	if n := r.gets.Load() + r.batches.Load(); n != 0 || c.Len() != 0 {
		t.Fatalf("PeekValue read %d times, left %d entries; want none", n, c.Len())
	}
}
