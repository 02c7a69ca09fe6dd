package breaker

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/api"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/cache"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/policy"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dbcount"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dynalite"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/grantcheck"
)

type fixture struct {
	st *store.Store
	db store.API
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	srv := dynalite.Start(t)
	db := srv.Client()
	return &fixture{st: store.New(db, srv.NewTable(t)).WithLogger(quiet()), db: db}
}

func quiet() *slog.Logger { return slog.New(slog.NewJSONHandler(io.Discard, nil)) }

// extension returns a breaker as one extension would hold it, with its
// own cache.
func (f *fixture) extension(ps policy.Policies) (*Breaker, *cache.Cache) {
	// A generous miss timeout: a first read on a loaded machine under
	// -race can take longer than the production 100 ms, and these tests
	// check decisions, not latency.
	c := cache.New(f.st, cache.Options{RefreshInterval: time.Millisecond, MissTimeout: 5 * time.Second, Logger: quiet()})
	b := New(func(context.Context) (*store.Store, error) { return f.st, nil }, c, Options{Policies: ps, Logger: quiet(), ClaimTimeout: 2 * time.Second})
	return b, c
}

// breaker returns a breaker over the fixture's table with default
// policies and a generous claim timeout.
func (f *fixture) breaker() *Breaker {
	return newBreaker(f.st, Options{Logger: quiet(), ClaimTimeout: 2 * time.Second})
}

func (f *fixture) put(t *testing.T, c circuit.Circuit) {
	t.Helper()
	cur, _, err := f.st.Get(context.Background(), c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.st.Write(context.Background(), cur, c, circuit.Transition); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) get(t *testing.T, id string) circuit.Circuit {
	t.Helper()
	c, _, err := f.st.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ptr(b bool) *bool { return &b }

func TestLeaseAdmitsExactlyKProbes(t *testing.T) {
	f := newFixture(t)
	for _, k := range []int{1, 2} {
		id := map[int]string{1: "one", 2: "two"}[k]
		ps := policy.Policies{id: {Passive: circuit.RateSettings{HalfOpenProbes: k}}}
		f.put(t, circuit.Circuit{ID: id, State: circuit.HalfOpen, Version: 1})
		// 20 callers in 5 extensions ask at once.
		var allowed, probes atomic.Int64
		var wg sync.WaitGroup
		for range 5 {
			b, _ := f.extension(ps)
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					d := b.Lookup(context.Background(), id)
					if d.Allowed {
						allowed.Add(1)
					}
					if d.Probe != "" {
						probes.Add(1)
					}
				}()
			}
		}
		wg.Wait()
		if allowed.Load() != int64(k) || probes.Load() != int64(k) {
			t.Errorf("K=%d: %d allowed, %d probes; want exactly %d", k, allowed.Load(), probes.Load(), k)
		}
	}
}

func TestProbeOutcomeClosesOrReopens(t *testing.T) {
	f := newFixture(t)
	ps := policy.Policies{"svc": {Breaker: circuit.Settings{SuccessThreshold: 2}}}
	ctx := context.Background()
	f.put(t, circuit.Circuit{ID: "svc", State: circuit.HalfOpen, Version: 1, OpenCount: 1})
	b, c := f.extension(ps)
	other, _ := f.extension(ps)

	for i, want := range []circuit.State{circuit.HalfOpen, circuit.Closed} {
		d := b.Lookup(ctx, "svc")
		if !d.Allowed || d.Probe == "" {
			t.Fatalf("probe %d: %+v, want a probe lease", i, d)
		}
		if d2 := other.Lookup(ctx, "svc"); d2.Allowed {
			t.Fatalf("second extension admitted while the lease is held: %+v", d2)
		}
		res, err := b.Report(ctx, "svc", []api.Outcome{{Success: ptr(true), LatencyMs: 5, ProbeToken: d.Probe}})
		if err != nil || res.State != string(want) {
			t.Fatalf("probe %d report = %+v, %v; want state %s", i, res, err, want)
		}
		other.mu.Lock()
		delete(other.busy, "svc") // let it retry at once
		other.mu.Unlock()
	}
	if got := f.get(t, "svc"); got.State != circuit.Closed || got.OpenCount != 0 {
		t.Fatalf("after 2 successful probes: %+v", got)
	}
	if n := b.Counted("svc"); !n.IsZero() {
		t.Errorf("probe outcomes were counted as ordinary outcomes: %+v", n)
	}

	// A failed probe reopens.
	f.put(t, circuit.Circuit{ID: "svc", State: circuit.HalfOpen, Version: f.get(t, "svc").Version + 1, OpenCount: 1})
	b, c = f.extension(ps) // a fresh extension reads the new state
	d := b.Lookup(ctx, "svc")
	if !d.Allowed || d.Probe == "" {
		t.Fatalf("after reopening half-open: %+v", d)
	}
	res, err := b.Report(ctx, "svc", []api.Outcome{{Success: ptr(false), LatencyMs: 5, ProbeToken: d.Probe}})
	if err != nil || res.State != "OPEN" {
		t.Fatalf("failed probe = %+v, %v", res, err)
	}
	if got := f.get(t, "svc"); got.State != circuit.Open || got.OpenCount != 2 || got.RetryAt.IsZero() {
		t.Fatalf("after a failed probe: %+v", got)
	}
	if got, _ := c.Peek("svc"); got.State != circuit.Open {
		t.Errorf("cache not updated: %+v", got)
	}
}

func TestExpiredLeaseDoesNotBlock(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.put(t, circuit.Circuit{ID: "svc", State: circuit.HalfOpen, Version: 1})
	// An extension claims and vanishes (never reports).
	gone := newBreaker(f.st, Options{Logger: quiet()})
	gone.leaseTTL = 200 * time.Millisecond
	if a := gone.admit(ctx, f.get(t, "svc"), time.Now()); !a.Allowed {
		t.Fatalf("first claim: %+v", a)
	}
	b, _ := f.extension(nil)
	b.busyRetry = 50 * time.Millisecond
	if a := b.admit(ctx, f.get(t, "svc"), time.Now()); a.Allowed {
		t.Fatalf("claimed while held: %+v", a)
	}
	time.Sleep(300 * time.Millisecond)
	a := b.admit(ctx, f.get(t, "svc"), time.Now())
	if !a.Allowed || a.Probe == "" {
		t.Fatalf("after expiry: %+v, want a probe lease", a)
	}
	if res, err := b.Report(ctx, "svc", []api.Outcome{{Success: ptr(true), ProbeToken: a.Probe}}); err != nil || res.State != "HALF_OPEN" {
		t.Fatalf("report = %+v, %v", res, err)
	}
}

func TestCooldownEndsOnLookup(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.put(t, circuit.Circuit{ID: "svc", State: circuit.Open, Version: 1, OpenCount: 1, RetryAt: time.Now().Add(-time.Second)})
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for range 3 {
		b, _ := f.extension(nil)
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if d := b.Lookup(ctx, "svc"); d.Allowed {
					allowed.Add(1)
				}
			}()
		}
	}
	wg.Wait()
	got := f.get(t, "svc")
	if got.State != circuit.HalfOpen || got.Version != 2 {
		t.Fatalf("after the cool-down: %+v, want HALF_OPEN at version 2 (one transition)", got)
	}
	if allowed.Load() != 1 {
		t.Fatalf("%d callers allowed, want exactly 1 probe", allowed.Load())
	}
	// Batch lookups never probe; an OPEN circuit in its cool-down denies.
	f.put(t, circuit.Circuit{ID: "cool", State: circuit.Open, Version: 1, RetryAt: time.Now().Add(time.Minute)})
	b, _ := f.extension(nil)
	if d := b.Lookup(ctx, "cool"); d.Allowed {
		t.Fatalf("cooling down: %+v", d)
	}
	if ds := b.LookupMany(ctx, []string{"svc"}); ds[0].Allowed {
		t.Fatalf("batch lookup admitted a half-open circuit: %+v", ds[0])
	}
}

func TestFlushCountsAndTrips(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	b, _ := f.extension(policy.Policies{"svc": {Passive: circuit.RateSettings{FastTripFailures: 100}}}) // the rate alone
	for range 4 {
		if _, err := b.Report(ctx, "svc", []api.Outcome{{Success: ptr(true), LatencyMs: 1}}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := b.Flush(ctx)
	if err != nil || res.Written != 0 || res.Evaluated != 0 {
		t.Fatalf("flush of successes = %+v, %v; want no write", res, err)
	}
	outs := make([]api.Outcome, 41)
	for i := range outs {
		outs[i] = api.Outcome{Success: ptr(false), LatencyMs: 4000}
	}
	if _, err := b.Report(ctx, "svc", outs); err != nil {
		t.Fatal(err)
	}
	// FlushAll writes the bucket still filling too, as at SHUTDOWN;
	// Flush would wait for it to end.
	res, err = b.FlushAll(ctx)
	if err != nil || res.Tripped != 1 {
		t.Fatalf("flush of failures = %+v, %v; want a trip", res, err)
	}
	got := f.get(t, "svc")
	if got.State != circuit.Open || got.Version != 1 || got.Reason != "failure rate 91% over 30s (45 calls)" {
		t.Fatalf("after trip: %+v", got)
	}
	if d := b.Lookup(ctx, "svc"); d.Allowed || d.State != circuit.Open {
		t.Fatalf("lookup after trip: %+v", d)
	}
}

type failingAPI struct {
	store.API
	fail atomic.Bool
}

func (f *failingAPI) UpdateItem(ctx context.Context, in *dynamodbUpdateItemInput, opts ...func(*dynamodbOptions)) (*dynamodbUpdateItemOutput, error) {
	if f.fail.Load() {
		return nil, context.DeadlineExceeded
	}
	return f.API.UpdateItem(ctx, in, opts...)
}

func TestFailedFlushKeepsCounts(t *testing.T) {
	srv := dynalite.Start(t)
	api0 := &failingAPI{API: srv.Client()}
	st := store.New(api0, srv.NewTable(t)).WithLogger(quiet())
	clk := &clock{now: time.Now()}
	b := newBreaker(st, Options{Logger: quiet(), Now: clk.Now})
	ctx := context.Background()
	_, _ = b.Report(ctx, "svc", []api.Outcome{{Success: ptr(true)}, {Success: ptr(false)}})
	api0.fail.Store(true)
	if res, err := b.FlushAll(ctx); err == nil || res.Failed != 1 || b.Pending() != 1 {
		t.Fatalf("failed flush = %+v, %v, pending %d", res, err, b.Pending())
	}
	_, _ = b.Report(ctx, "svc", []api.Outcome{{Success: ptr(true)}})
	api0.fail.Store(false)
	// A failed write waits at least half a second before it is offered
	// again, so that a throttled fleet does not retry at every invocation.
	if res, err := b.FlushAll(ctx); err != nil || res.Written != 0 || b.Pending() != 1 {
		t.Fatalf("flush right after the failure = %+v, %v, pending %d; want no retry yet", res, err, b.Pending())
	}
	clk.Add(1500 * time.Millisecond)
	if _, err := b.FlushAll(ctx); err != nil || b.Pending() != 0 {
		t.Fatalf("retry flush = %v, pending %d", err, b.Pending())
	}
	var sum circuit.Counts
	now := time.Now()
	bs, err := st.GetBuckets(ctx, "svc", WindowStarts(now, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range bs {
		sum = sum.Add(x.Counts)
	}
	if sum.Calls != 3 || sum.Failures != 1 {
		t.Fatalf("table holds %+v, want 3 calls, 1 failure", sum)
	}
}

func TestWindowStarts(t *testing.T) {
	now := time.Unix(1_800_000_012, 0)
	got := WindowStarts(now, 30*time.Second)
	if len(got) != 6 || got[5].Unix() != 1_800_000_010 || got[0].Unix() != 1_799_999_985 {
		t.Fatalf("WindowStarts = %v", got)
	}
}

// TestOverrideItemDecidesForTheExtension checks the extension's view of a
// circuit: the override item wins over override attributes on the circuit
// item (which an attached function can write), and a table written by
// earlier versions, with the override on the circuit item only, still
// works.
func TestOverrideItemDecidesForTheExtension(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	now := time.Now()
	db := f.db
	table := f.st.Table()
	// forge writes override attributes on a circuit item, as a handler
	// with the attached function's grant could.
	forge := func(id string, o circuit.Override) {
		t.Helper()
		if _, err := db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName:                 &table,
			Key:                       map[string]types.AttributeValue{store.KeyAttribute: &types.AttributeValueMemberS{Value: id}},
			UpdateExpression:          aws.String("SET #o = :o, #r = :r"),
			ExpressionAttributeNames:  map[string]string{"#o": "override", "#r": "overrideReason"},
			ExpressionAttributeValues: map[string]types.AttributeValue{":o": &types.AttributeValueMemberS{Value: string(o)}, ":r": &types.AttributeValueMemberS{Value: "in-item"}},
		}); err != nil {
			t.Fatal(err)
		}
	}

	// "forced": an operator's FORCED_OPEN, then a forged in-item
	// FORCED_CLOSED on a CLOSED circuit.
	f.put(t, circuit.Circuit{ID: "forced", State: circuit.Closed, Version: 1})
	if _, err := f.st.SetOverride(ctx, "forced", circuit.ForcedOpen, "bad deploy", time.Time{}, now); err != nil {
		t.Fatal(err)
	}
	forge("forced", circuit.ForcedClosed)
	// "legacy": a table written by earlier versions, FORCED_OPEN in-item.
	f.put(t, circuit.Circuit{ID: "legacy", State: circuit.Closed, Version: 1})
	forge("legacy", circuit.ForcedOpen)
	// "overridden-only": no circuit item, an operator's FORCED_OPEN.
	if _, err := f.st.SetOverride(ctx, "overridden-only", circuit.ForcedOpen, "not live yet", time.Time{}, now); err != nil {
		t.Fatal(err)
	}

	for _, batch := range [][]string{{"forced"}, {"legacy"}, {"overridden-only"}, {"forced", "legacy", "overridden-only"}} {
		fresh, _ := f.extension(nil)
		for i, d := range fresh.LookupMany(ctx, batch) {
			if !d.Known || d.Stale || d.Allowed || d.State != circuit.Open {
				t.Errorf("lookup of %s (batch %v) = %+v; want a denial, state OPEN", batch[i], batch, d)
			}
		}
	}
}

// TestExtensionWritesStayInTheGrant records every UpdateItem the extension
// sends in a realistic run (bucket writes, a trip, probe leases and their
// settlements, the rewrite of an unreadable circuit item) and checks each
// against the attached function's grant as IAM would: own keys only, no
// protected attribute (the operator override), no whole item returned.
func TestExtensionWritesStayInTheGrant(t *testing.T) {
	srv := dynalite.Start(t)
	table := srv.NewTable(t)
	ctx := context.Background()
	var mu sync.Mutex
	var sent []*dynamodb.UpdateItemInput
	rec := &dbcount.Client{API: srv.Client(), OnUpdate: func(in *dynamodb.UpdateItemInput) {
		mu.Lock()
		defer mu.Unlock()
		sent = append(sent, in)
	}}
	operator := store.New(srv.Client(), table).WithLogger(quiet())
	f := &fixture{st: store.New(rec, table).WithLogger(quiet()), db: rec}
	ids := []string{"svc", "broken"}
	for _, id := range ids {
		if _, err := operator.MigrateOverride(ctx, id, time.Now()); err != nil {
			t.Fatal(err)
		}
		if _, err := operator.SyncCopies(ctx, id, 3, 1); err != nil {
			t.Fatal(err)
		}
	}
	ps := policy.Policies{"svc": {Breaker: circuit.Settings{SuccessThreshold: 2}, Passive: circuit.RateSettings{FastTripFailures: 100}}}
	b, _ := f.extension(ps)

	// Outcomes and a trip.
	outs := make([]api.Outcome, 45)
	for i := range outs {
		outs[i] = api.Outcome{Success: ptr(i < 4), LatencyMs: 4000}
	}
	if _, err := b.Report(ctx, "svc", outs); err != nil {
		t.Fatal(err)
	}
	if res, err := b.FlushAll(ctx); err != nil || res.Tripped != 1 {
		t.Fatalf("flush = %+v, %v; want a trip", res, err)
	}
	// Probes: two successes close, then a failure reopens.
	cur, _, err := operator.Get(ctx, "svc")
	if err != nil {
		t.Fatal(err)
	}
	half := cur
	half.State, half.Version = circuit.HalfOpen, cur.Version+1
	if err := operator.Write(ctx, cur, half, circuit.Transition); err != nil {
		t.Fatal(err)
	}
	b, _ = f.extension(ps) // a fresh extension reads HALF_OPEN
	for _, success := range []bool{true, true} {
		d := b.Lookup(ctx, "svc")
		if !d.Allowed || d.Probe == "" {
			t.Fatalf("lookup = %+v, want a probe", d)
		}
		if _, err := b.Report(ctx, "svc", []api.Outcome{{Success: ptr(success), LatencyMs: 5, ProbeToken: d.Probe}}); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.get(t, "svc"); got.State != circuit.Closed {
		t.Fatalf("after two successful probes: %+v", got)
	}
	// An item an attached function broke is rewritten by the next trip.
	if _, err := srv.Client().UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: &table,
		Key:              map[string]types.AttributeValue{store.KeyAttribute: &types.AttributeValueMemberS{Value: "broken"}},
		UpdateExpression: aws.String("SET #s = :s"), ExpressionAttributeNames: map[string]string{"#s": "state"},
		ExpressionAttributeValues: map[string]types.AttributeValue{":s": &types.AttributeValueMemberS{Value: "BOGUS"}}}); err != nil {
		t.Fatal(err)
	}
	b2, _ := f.extension(policy.Policies{"broken": {Passive: circuit.RateSettings{FastTripFailures: 100}}})
	if _, err := b2.Report(ctx, "broken", outs); err != nil {
		t.Fatal(err)
	}
	_, _ = b2.FlushAll(ctx)
	if r, err := operator.ReadCircuit(ctx, "broken"); err != nil || r.Unreadable != nil {
		t.Fatalf("broken item after the extension's write: %+v, %v; want it rewritten", r, err)
	}

	mu.Lock()
	defer mu.Unlock()
	kinds := map[store.Kind]int{}
	for _, in := range sent {
		if err := grantcheck.Check(in, ids); err != nil {
			t.Error(err)
		}
		_, kind, _ := store.ParseKey(in.Key[store.KeyAttribute].(*types.AttributeValueMemberS).Value)
		kinds[kind]++
	}
	for _, k := range []store.Kind{store.KindCircuit, store.KindCopy, store.KindBucket, store.KindLease} {
		if kinds[k] == 0 {
			t.Errorf("no write of a %s item recorded (%v): the run does not exercise it", k, kinds)
		}
	}
}
