package ddbmodel

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dynalite"
)

// script runs the store operations the extension makes against api and
// returns what the store reads back.
func script(t *testing.T, api store.API, table string) (circuit.Circuit, []circuit.Bucket, []store.BucketShard, []error) {
	t.Helper()
	ctx := context.Background()
	st := store.New(api, table)
	now := time.Unix(1_800_000_000, 0).UTC()
	var errs []error
	// The updater's migration creates the circuit item with its override
	// attribute; then a trip, a lost race, counters, a lease claimed twice
	// and released.
	_, err := st.MigrateOverride(ctx, "pay", now)
	errs = append(errs, err)
	cur, _, err := st.Get(ctx, "pay")
	errs = append(errs, err)
	next := cur
	next.State, next.Version, next.UpdatedAt, next.Reason = circuit.Open, cur.Version+1, now, "test"
	next.RetryAt = now.Add(30 * time.Second)
	errs = append(errs, st.Write(ctx, cur, next, circuit.Transition))
	errs = append(errs, st.Write(ctx, cur, next, circuit.Transition)) // the same base again: a conflict
	start := now.Truncate(5 * time.Second)
	var written []store.BucketShard
	for i, c := range []circuit.Counts{{Calls: 10, Failures: 3}, {Calls: 5, Failures: 5, Slow: 1}, {Calls: 2, Runs: 1}} {
		sh, err := st.AddCounts(ctx, "pay", start, i%2, c, now.Add(time.Hour))
		written = append(written, sh)
		errs = append(errs, err)
	}
	l, err := st.ClaimLease(ctx, "pay", 1, 0, "a", next.Version, 10*time.Second, now)
	errs = append(errs, err)
	_, err = st.ClaimLease(ctx, "pay", 1, 0, "b", next.Version, 10*time.Second, now)
	errs = append(errs, err) // busy
	errs = append(errs, st.ReleaseLease(ctx, l))
	errs = append(errs, st.ReleaseLease(ctx, l)) // lost
	c, _, err := st.Get(ctx, "pay")
	errs = append(errs, err)
	bs, err := st.GetBuckets(ctx, "pay", []time.Time{start, start.Add(5 * time.Second)})
	errs = append(errs, err)
	return c, bs, written, errs
}

// The model answers the store's operations as dynalite does, and charges
// what DynamoDB would.
func TestModelMatchesDynalite(t *testing.T) {
	srv := dynalite.Start(t)
	wantC, wantB, wantW, wantErrs := script(t, srv.Client(), srv.NewTable(t))
	now := time.Unix(1_800_000_000, 0)
	m := New("t", func() time.Time { return now })
	gotC, gotB, gotW, gotErrs := script(t, m, "t")
	if gotC.State != wantC.State || gotC.Version != wantC.Version || !gotC.RetryAt.Equal(wantC.RetryAt) || gotC.Reason != wantC.Reason {
		t.Errorf("circuit: model %+v, dynalite %+v", gotC, wantC)
	}
	if len(gotB) != len(wantB) || len(gotB) != 1 || gotB[0].Counts != wantB[0].Counts {
		t.Errorf("buckets: model %+v, dynalite %+v", gotB, wantB)
	}
	// The bucket writes return the shard (ReturnValues UPDATED_NEW).
	if len(gotW) != 3 || gotW[2].Writes != 2 || gotW[2].Calls != 12 || gotW[2].Runs != 1 {
		t.Errorf("model's writes returned %+v", gotW)
	}
	for i := range min(len(gotW), len(wantW)) {
		if gotW[i] != wantW[i] {
			t.Errorf("write %d returned %+v by the model, %+v by dynalite", i, gotW[i], wantW[i])
		}
	}
	if len(gotErrs) != len(wantErrs) {
		t.Fatalf("errors: %d against %d", len(gotErrs), len(wantErrs))
	}
	for i := range gotErrs {
		if (gotErrs[i] == nil) != (wantErrs[i] == nil) {
			t.Errorf("step %d: model error %v, dynalite error %v", i, gotErrs[i], wantErrs[i])
		}
	}
	if !errors.Is(gotErrs[3], store.ErrConflict) {
		t.Errorf("second write: %v, want a conflict", gotErrs[3])
	}
	tot := m.Total()
	// Reads: strongly consistent, the migration's (the circuit key, then
	// the legacy override key, as the circuit item has no override
	// attribute yet), Get (1 key) at the start and end, and the
	// conflicting write's token check, which reads the circuit item back
	// (circuit writes do not ask for it with the failure); eventually
	// consistent, GetBuckets (2 buckets of BucketShards shards each).
	if want := 5 + 2*store.BucketShards; tot.ReadUnits != 5+float64(want-5)/2 || tot.Reads != int64(want) {
		t.Errorf("read units %v in %d reads, want %v in %d", tot.ReadUnits, tot.Reads, 5+float64(want-5)/2, want)
	}
	// Writes: the migration, two transitions (one refused, still
	// charged), three bucket ADDs, two claims (one refused), two releases
	// (one refused).
	if tot.WriteUnits != 10 || tot.Writes != 10 {
		t.Errorf("write units %v in %d writes, want 10 in 10", tot.WriteUnits, tot.Writes)
	}
}

// An item is refused past its per-second limits, and served again in the
// next second; eventually consistent reads cost half.
func TestModelThrottlesPerItem(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	m := New("t", func() time.Time { return now })
	ctx := context.Background()
	st := store.New(m, "t")
	t0 := now
	var throttled int
	for range 1001 {
		_, err := st.AddCounts(ctx, "pay", t0, 0, circuit.Counts{Calls: 1}, now.Add(time.Hour))
		var pte *types.ProvisionedThroughputExceededException
		if errors.As(err, &pte) {
			throttled++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if throttled != 1 {
		t.Errorf("%d of 1001 writes in one second throttled, want 1", throttled)
	}
	// Another item is not affected.
	if _, err := st.AddCounts(ctx, "other", now, 0, circuit.Counts{Calls: 1}, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Second)
	if _, err := st.AddCounts(ctx, "pay", t0, 0, circuit.Counts{Calls: 1}, now.Add(time.Hour)); err != nil {
		t.Fatalf("the next second: %v", err)
	}
	_, _, w, key := m.Hottest()
	if w != 1000 || key != store.BucketKey("pay", t0, 0) {
		t.Errorf("hottest write %v on %q", w, key)
	}
	u := m.Items()
	var pay Usage
	for _, x := range u {
		if x.Key == key {
			pay = x
		}
	}
	if pay.ThrottledWrites != 1 || pay.Writes != 1001 || pay.PeakWriteUnits != 1000 {
		t.Errorf("usage %+v", pay)
	}
}
