package breaker

import (
	"context"
	"fmt"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dbcount"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/api"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/cache"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/policy"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dynalite"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/logbuf"
)

// A flush whose writes all fail returns one small error: a count and the
// first few, not every error joined (a log line over CloudWatch Logs'
// 256 KB event limit is cut).
func TestFlushErrorStaysSmall(t *testing.T) {
	srv := dynalite.Start(t)
	api0 := &failingAPI{API: srv.Client()}
	st := store.New(api0, srv.NewTable(t)).WithLogger(quiet())
	b := newBreaker(st, Options{Logger: quiet()})
	ctx := context.Background()
	const circuits = 200
	for i := range circuits {
		if _, err := b.Report(ctx, fmt.Sprintf("svc-%d", i), []api.Outcome{{Success: ptr(false)}}); err != nil {
			t.Fatal(err)
		}
	}
	api0.fail.Store(true)
	res, err := b.FlushAll(ctx)
	if err == nil || res.Failed != circuits {
		t.Fatalf("flush = %+v, %v; want %d failed writes", res, err, circuits)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, fmt.Sprintf("%d errors, the first %d: ", circuits, maxLoggedErrors)) || strings.Count(msg, "add counts to") != maxLoggedErrors || len(msg) > 2000 {
		t.Fatalf("flush error (%d bytes) = %.300s", len(msg), msg)
	}
	if b.Pending() != circuits {
		t.Fatalf("pending %d after the failed flush, want every count kept", b.Pending())
	}
}

// The cache says OPEN, but another sandbox's probe has closed the circuit
// since it was read: once the cached value is older than the maximum age,
// failures flushed now are evaluated against a fresh read and trip the
// circuit, instead of being skipped as "already open".
func TestFlushTripsWhenTheCacheIsBehind(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.put(t, circuit.Circuit{ID: "svc", State: circuit.Open, Version: 1, OpenCount: 1, RetryAt: time.Now().Add(time.Hour)})
	var ahead atomic.Int64 // how far the cache's clock runs ahead
	cacheNow := func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }
	c := cache.New(f.st, cache.Options{RefreshInterval: time.Second, MaxAge: time.Second, Now: cacheNow, Logger: quiet()})
	b := New(func(context.Context) (*store.Store, error) { return f.st, nil }, c, Options{Logger: quiet(), ClaimTimeout: 2 * time.Second})
	if d := b.Lookup(ctx, "svc"); d.State != circuit.Open {
		t.Fatalf("cached %s, want OPEN", d.State)
	}
	// Elsewhere: HALF_OPEN, then closed by its probes, a minute ago.
	f.put(t, circuit.Circuit{ID: "svc", State: circuit.HalfOpen, Version: 2, OpenCount: 1, UpdatedAt: time.Now().Add(-2 * time.Minute)})
	f.put(t, circuit.Circuit{ID: "svc", State: circuit.Closed, Version: 3, UpdatedAt: time.Now().Add(-time.Minute)})
	if cached, _ := c.Peek("svc"); cached.State != circuit.Open {
		t.Fatalf("cache refreshed to %s; the test needs it behind the table", cached.State)
	}

	outs := make([]api.Outcome, 30)
	for i := range outs {
		outs[i] = api.Outcome{Success: ptr(false), LatencyMs: 5}
	}
	if _, err := b.Report(ctx, "svc", outs); err != nil {
		t.Fatal(err)
	}
	ahead.Store(int64(2 * time.Second)) // the cached OPEN is now older than the maximum age
	res, err := b.FlushAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := f.get(t, "svc")
	if res.Tripped != 1 || got.State != circuit.Open || got.Version != 4 {
		t.Errorf("flush of 30 failures = %+v, table %s v%d; want the circuit tripped to OPEN v4", res, got.State, got.Version)
	}
	if cached, _ := c.Peek("svc"); cached.Version != got.Version {
		t.Errorf("cache holds v%d after the trip, want v%d", cached.Version, got.Version)
	}
}

// A circuit the cache holds as OPEN, younger than the maximum age, is not
// read from the table when this environment's failures are flushed: the
// window is not evaluated and no read of the circuit item is made (while
// a circuit is OPEN, every environment that writes a bucket may evaluate).
func TestFlushSkipsAFreshOpenCircuitWithoutReading(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.put(t, circuit.Circuit{ID: "svc", State: circuit.Open, Version: 1, OpenCount: 1, RetryAt: time.Now().Add(time.Hour)})
	counted := &dbcount.Client{API: f.db}
	st := store.New(counted, f.st.Table()).WithLogger(quiet())
	c := cache.New(st, cache.Options{RefreshInterval: time.Hour, MaxAge: time.Hour, Logger: quiet()})
	b := New(func(context.Context) (*store.Store, error) { return st, nil }, c, Options{Logger: quiet(), ClaimTimeout: 2 * time.Second})
	if d := b.Lookup(ctx, "svc"); d.State != circuit.Open {
		t.Fatalf("cached %s, want OPEN", d.State)
	}
	outs := make([]api.Outcome, 30)
	for i := range outs {
		outs[i] = api.Outcome{Success: ptr(false), LatencyMs: 5}
	}
	if _, err := b.Report(ctx, "svc", outs); err != nil {
		t.Fatal(err)
	}
	before := counted.Reads.Load()
	res, err := b.FlushAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	reads := counted.Reads.Load() - before
	if res.Tripped != 0 || res.Written != 1 {
		t.Errorf("flush = %+v, want the bucket written and no trip", res)
	}
	if reads != 0 {
		t.Errorf("%d table reads during the flush of an OPEN circuit held fresh, want 0", reads)
	}
}

// Counts that failed to reach the table are kept only while they can
// still count in a window; counts the table refuses for good are dropped
// at once. Neither is retried forever.
func TestFlushDropsWhatCanNeverCount(t *testing.T) {
	srv := dynalite.Start(t)
	api0 := &failingAPI{API: srv.Client()}
	table := srv.NewTable(t)
	ctx := context.Background()

	t.Run("older than the window", func(t *testing.T) {
		clk := &clock{now: time.Now()}
		st := store.New(api0, table).WithLogger(quiet())
		b := newBreaker(st, Options{Logger: quiet(), Now: clk.Now,
			Policies: policy.Policies{"svc": {Passive: circuit.RateSettings{Window: 10 * time.Second}}}})
		_, _ = b.Report(ctx, "svc", []api.Outcome{{Success: ptr(false)}})
		api0.fail.Store(true)
		defer api0.fail.Store(false)
		// Still inside the window: kept for the next flush.
		clk.Add(9 * time.Second)
		if res, err := b.Flush(ctx); err == nil || res.Failed != 1 || res.Dropped != 0 || b.Pending() != 1 {
			t.Fatalf("flush inside the window = %+v, %v, pending %d; want it kept", res, err, b.Pending())
		}
		// Bucket (5 s) plus window (10 s) later, it can no longer count.
		clk.Add(7 * time.Second)
		res, err := b.Flush(ctx)
		if err != nil || res.Dropped != 1 || res.Failed != 0 || res.Written != 0 || b.Pending() != 0 {
			t.Fatalf("flush past the window = %+v, %v, pending %d; want it dropped without a write", res, err, b.Pending())
		}
	})

	t.Run("refused by the table", func(t *testing.T) {
		st := store.New(api0, "no-such-table").WithLogger(quiet())
		b := newBreaker(st, Options{Logger: quiet()})
		_, _ = b.Report(ctx, "svc", []api.Outcome{{Success: ptr(true)}, {Success: ptr(false)}})
		res, err := b.FlushAll(ctx)
		if err == nil || !store.Permanent(err) || res.Dropped != 1 || res.Failed != 0 || b.Pending() != 0 {
			t.Fatalf("flush to a missing table = %+v, %v, pending %d; want the counts dropped and the error returned", res, err, b.Pending())
		}
	})
}

func TestEvaluateChance(t *testing.T) {
	tests := []struct {
		k    int64
		want float64
	}{
		{0, 1}, // the table did not say: as the first
		{1, 1},
		{2, 1},
		{3, 2.0 / 3},
		{4, 0.5},
		{100, 0.02},
		{10_000, 0.0002},
	}
	for _, tt := range tests {
		if got := evaluateChance(tt.k); got != tt.want {
			t.Errorf("evaluateChance(%d) = %v, want %v", tt.k, got, tt.want)
		}
	}
}

func TestMinTripCalls(t *testing.T) {
	tests := []struct {
		r    circuit.RateSettings
		want int64
	}{
		{circuit.RateSettings{}, 26}, // 26 failures of 26 calls at 0.8 × 50 %
		{circuit.RateSettings{FailureRateThreshold: 90}, 71},
		{circuit.RateSettings{FailureRateThreshold: 20}, 13},
		{circuit.RateSettings{SlowCallRateThreshold: 20}, 13},
		{circuit.RateSettings{MinimumCalls: 100}, 40}, // the runs rule: 4 runs of 10
		{circuit.RateSettings{FastTripFailures: 1}, 26},
	}
	for _, tt := range tests {
		if got := minTripCalls(tt.r); got != tt.want {
			t.Errorf("minTripCalls(%+v) = %d, want %d", tt.r, got, tt.want)
		}
	}
}

// A write that held trouble leads to an evaluation only when this
// environment's window is urgent (and, from minTripCalls calls on, holds
// evidence of its own), and then with probability c/k for the k-th write
// of its shard, times its window's calls over minTripCalls when fewer; the
// draws come from an injected source.
func TestFlushSamplesEvaluations(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	t0 := time.Now().Truncate(5 * time.Second)
	tests := []struct {
		name string
		// others is how many writes other environments made to the shard
		// first; failed and ok are this environment's calls.
		others    int
		failed    int
		ok        int
		draw      float64
		evaluated int
	}{
		{"lone writer, urgent: always", 0, 20, 10, 0.999, 1},
		{"second writer: always", 1, 20, 10, 0.999, 1},
		{"tenth writer, draw under 2/10", 9, 20, 10, 0.19, 1},
		{"tenth writer, draw over 2/10", 9, 20, 10, 0.21, 0},
		{"not urgent (1 failure in 10)", 0, 1, 9, 0, 0},
		{"at the threshold without evidence of its own (16 failures in 30)", 0, 16, 14, 0, 0},
		{"2 calls in the window, draw under 2/26", 0, 2, 0, 0.07, 1},
		{"2 calls in the window, draw over 2/26", 0, 2, 0, 0.08, 0},
		{"tenth writer with 13 calls, draw under 2/10 × 13/26", 9, 13, 0, 0.099, 1},
		{"tenth writer with 13 calls, draw over 2/10 × 13/26", 9, 13, 0, 0.101, 0},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := fmt.Sprintf("svc-%d", i)
			clk := &clock{now: t0.Add(time.Second)}
			b := newBreaker(f.st, Options{Logger: quiet(), Now: clk.Now,
				Policies: policy.Policies{id: {Passive: circuit.RateSettings{FastTripFailures: 100}}}})
			b.SetShard(7, func() float64 { return tt.draw })
			for range tt.others {
				if _, err := f.st.AddCounts(ctx, id, t0, 7, circuit.Counts{Calls: 1}, t0.Add(time.Hour)); err != nil {
					t.Fatal(err)
				}
			}
			var outs []api.Outcome
			for range tt.ok {
				outs = append(outs, api.Outcome{Success: ptr(true)})
			}
			for range tt.failed {
				outs = append(outs, api.Outcome{Success: ptr(false)})
			}
			if _, err := b.Report(ctx, id, outs); err != nil {
				t.Fatal(err)
			}
			clk.Add(5 * time.Second) // the bucket has ended: written
			res, err := b.Flush(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if res.Written != 1 || res.Evaluated != tt.evaluated || res.Skipped != 1-tt.evaluated {
				t.Errorf("flush = %+v; want 1 written, %d evaluated, %d skipped", res, tt.evaluated, 1-tt.evaluated)
			}
		})
	}
}

// missShard hides one bucket shard from window reads, as an eventually
// consistent read that has not seen the latest write yet would.
type missShard struct {
	store.API
	key string
}

func (m *missShard) BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error) {
	out, err := m.API.BatchGetItem(ctx, in, opts...)
	if err != nil {
		return out, err
	}
	for table, items := range out.Responses {
		out.Responses[table] = slices.DeleteFunc(items, func(item map[string]types.AttributeValue) bool {
			k, ok := item[store.KeyAttribute].(*types.AttributeValueMemberS)
			return ok && k.Value == m.key
		})
	}
	return out, nil
}

// The evaluation sums every shard of the window: counts that trip the
// circuit only together, spread over shards of two buckets, trip it; this
// environment's own shard counts as its write returned it even when the
// read misses it.
func TestEvaluationSumsShards(t *testing.T) {
	srv := dynalite.Start(t)
	table := srv.NewTable(t)
	ctx := context.Background()
	now := time.Now()
	starts := WindowStarts(now, 30*time.Second)
	tests := []struct {
		name string
		// spread writes these counts to these shards of the last two
		// buckets; then this environment reports its failures.
		spread   map[int]circuit.Counts
		mine     int
		miss     bool
		tripped  bool
		reason   string
		wantSeen int64
	}{
		// 26 calls that all failed trip at the default threshold; 25 do not.
		{"the sum of four shards trips", map[int]circuit.Counts{0: {Calls: 5, Failures: 5}, 9: {Calls: 6, Failures: 6}, 17: {Calls: 6, Failures: 6}, 31: {Calls: 6, Failures: 6}}, 3, false, true, "failure rate 100% over 30s (26 calls)", 26},
		{"one call short", map[int]circuit.Counts{0: {Calls: 5, Failures: 5}, 9: {Calls: 6, Failures: 6}, 17: {Calls: 6, Failures: 6}, 31: {Calls: 5, Failures: 5}}, 3, false, false, "", 25},
		{"own shard missed by the read", map[int]circuit.Counts{0: {Calls: 11, Failures: 11}, 9: {Calls: 12, Failures: 12}}, 3, true, true, "failure rate 100% over 30s (26 calls)", 26},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := fmt.Sprintf("svc-%d", i)
			st := store.New(srv.Client(), table).WithLogger(quiet())
			if tt.miss {
				st = store.New(&missShard{API: srv.Client(), key: store.BucketKey(id, starts[len(starts)-1], 20)}, table).WithLogger(quiet())
			}
			for shard, c := range tt.spread {
				// Half of each shard's counts in each of the last two buckets.
				half := circuit.Counts{Calls: c.Calls / 2, Failures: c.Failures / 2}
				for j, part := range []circuit.Counts{half, c.Sub(half)} {
					if _, err := st.AddCounts(ctx, id, starts[len(starts)-2+j], shard, part, now.Add(time.Hour)); err != nil {
						t.Fatal(err)
					}
				}
			}
			b := newBreaker(st, Options{Logger: quiet(), Policies: policy.Policies{id: {Passive: circuit.RateSettings{FastTripFailures: 100}}}})
			b.SetShard(20, func() float64 { return 0 }) // 3 calls: sampled at 3/26
			outs := make([]api.Outcome, tt.mine)
			for j := range outs {
				outs[j] = api.Outcome{Success: ptr(false)}
			}
			if _, err := b.Report(ctx, id, outs); err != nil {
				t.Fatal(err)
			}
			res, err := b.FlushAll(ctx)
			if err != nil || res.Written != 1 || res.Evaluated != 1 {
				t.Fatalf("flush = %+v, %v; want one write and one evaluation", res, err)
			}
			got, _, err := store.New(srv.Client(), table).Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if (res.Tripped == 1) != tt.tripped || (got.State == circuit.Open) != tt.tripped || got.Reason != tt.reason {
				t.Errorf("flush %+v, circuit %s %q; want tripped %v, reason %q", res, got.State, got.Reason, tt.tripped, tt.reason)
			}
			bs, err := store.New(srv.Client(), table).GetBuckets(ctx, id, WindowStarts(time.Now(), time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			var sum circuit.Counts
			for _, x := range bs {
				sum = sum.Add(x.Counts)
			}
			if sum.Calls != tt.wantSeen {
				t.Errorf("the table holds %d calls, want %d", sum.Calls, tt.wantSeen)
			}
		})
	}
}

// Several environments, each writing its own shard, open the circuit
// together on evidence that none of them holds alone: each reports 11
// successes, then a run of 10 failures (under the 50 % threshold, but a
// run makes its window urgent); five runs among 105 calls trip the runs
// rule, four among 84 do not. Then every environment refuses.
func TestEnvironmentsOnDifferentShardsTripTogether(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const envs = 5
	var bs []*Breaker
	var caches []*cache.Cache
	for i := range envs {
		b, c := f.extension(nil)
		b.SetShard(i*7, func() float64 { return 0 }) // 21 calls: sampled at 21/26
		bs = append(bs, b)
		caches = append(caches, c)
	}
	var outs []api.Outcome
	for range 11 {
		outs = append(outs, api.Outcome{Success: ptr(true)})
	}
	for range circuit.DefaultFastTripFailures {
		outs = append(outs, api.Outcome{Success: ptr(false)})
	}
	for i, b := range bs {
		if d := b.Lookup(ctx, "svc"); !d.Allowed {
			t.Fatalf("env %d refused before any failure: %+v", i, d)
		}
		if _, err := b.Report(ctx, "svc", outs); err != nil {
			t.Fatal(err)
		}
		res, err := b.FlushAll(ctx)
		if err != nil || res.Written != 1 || res.Evaluated != 1 {
			t.Fatalf("env %d: flush = %+v, %v; want one write and one evaluation", i, res, err)
		}
		got := f.get(t, "svc")
		if last := i == envs-1; (got.State == circuit.Open) != last || (res.Tripped == 1) != last {
			t.Fatalf("after env %d's run: circuit %s, flush %+v; want it tripped by the fifth run only", i, got.State, res)
		}
	}
	if got := f.get(t, "svc"); got.Reason != "5 runs of 10 consecutive failed calls over 30s (105 calls)" {
		t.Errorf("reason %q", got.Reason)
	}
	// The counts sit in five shard items.
	shards, err := f.st.GetBucketShards(ctx, "svc", WindowStarts(time.Now(), 30*time.Second))
	if err != nil || len(shards) != envs {
		t.Fatalf("shards = %+v, %v; want %d", shards, err, envs)
	}
	// Each environment refuses on its own (its run is a local trip); each
	// cache comes to hold the fleet-wide trip from the table.
	for i, b := range bs {
		deadline := time.Now().Add(10 * time.Second)
		for {
			d := b.Lookup(ctx, "svc") // starts a refresh (every millisecond here)
			c, _ := caches[i].Peek("svc")
			if d.Allowed {
				t.Fatalf("env %d allowed a call: %+v", i, d)
			}
			if c.State == circuit.Open && c.Version == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("env %d's cache still holds %+v", i, c)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// A run makes two writes evaluate, the one that holds it and the next,
// not every write while it stays in the window.
func TestRunEvaluatesTwice(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	t0 := time.Now().Truncate(5 * time.Second)
	clk := &clock{now: t0.Add(time.Second)}
	b := newBreaker(f.st, Options{Logger: quiet(), Now: clk.Now})
	b.SetShard(3, func() float64 { return 0 })
	outs := func(ok, failed int) []api.Outcome {
		var o []api.Outcome
		for range ok {
			o = append(o, api.Outcome{Success: ptr(true)})
		}
		for range failed {
			o = append(o, api.Outcome{Success: ptr(false)})
		}
		return o
	}
	steps := []struct {
		name            string
		ok, failed      int
		evaluated, skip int
	}{
		{"the write that holds the run", 30, 10, 1, 0},
		{"the next write", 30, 1, 1, 0},
		{"a later write, the run still in the window", 30, 1, 0, 1},
	}
	for _, st := range steps {
		if _, err := b.Report(ctx, "svc", outs(st.ok, st.failed)); err != nil {
			t.Fatal(err)
		}
		clk.Add(5 * time.Second) // each step fills a bucket, written once it ended
		res, err := b.Flush(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if res.Evaluated != st.evaluated || res.Skipped != st.skip {
			t.Errorf("%s: flush = %+v; want %d evaluated, %d skipped", st.name, res, st.evaluated, st.skip)
		}
	}
	if c := b.Counted("svc"); c.Runs != 1 {
		t.Errorf("window holds %+v, want the one run", c)
	}
}

// The bucket still filling is never written early, even when this
// environment's own window is urgent (a run, and a failure rate over the
// threshold): a write chosen by its outcome would bias the window the
// fleet reads. It is written, and evaluated, once it ended; at SHUTDOWN
// FlushAll writes it.
func TestUrgentWindowDoesNotWriteTheFillingBucket(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	t0 := time.Now().Truncate(5 * time.Second)
	for _, tt := range []struct {
		name     string
		shutdown bool
	}{{"ended", false}, {"at SHUTDOWN", true}} {
		t.Run(tt.name, func(t *testing.T) {
			id := "svc-" + tt.name
			clk := &clock{now: t0.Add(time.Second)}
			b := newBreaker(f.st, Options{Logger: quiet(), Now: clk.Now})
			b.SetShard(3, func() float64 { return 0 })
			outs := make([]api.Outcome, 30)
			for i := range outs {
				outs[i] = api.Outcome{Success: ptr(i%3 == 0)} // 20 failed, the last 2 in a row
			}
			for range circuit.DefaultFastTripFailures {
				outs = append(outs, api.Outcome{Success: ptr(false)}) // a run
			}
			if _, err := b.Report(ctx, id, outs); err != nil {
				t.Fatal(err)
			}
			if w := b.Counted(id); w.Runs != 1 || 2*w.Failures < w.Calls {
				t.Fatalf("window %+v: the test needs it urgent (a run, over 50 %%)", w)
			}
			clk.Add(3 * time.Second) // still the same bucket
			res, err := b.Flush(ctx)
			if err != nil || res.Written != 0 || res.Evaluated != 0 || b.Pending() != 1 {
				t.Fatalf("flush of the filling bucket = %+v, %v, pending %d; want nothing written", res, err, b.Pending())
			}
			if tt.shutdown {
				res, err = b.FlushAll(ctx)
			} else {
				clk.Add(time.Second) // the bucket has ended
				res, err = b.Flush(ctx)
			}
			if err != nil || res.Written != 1 || res.Evaluated != 1 || b.Pending() != 0 {
				t.Fatalf("flush = %+v, %v, pending %d; want the bucket written and evaluated", res, err, b.Pending())
			}
		})
	}
}

// bucketFaultAPI fails bucket writes (UpdateItem of a key holding
// store.BucketInfix) as fault says: applied then answered with an error,
// as when the answer is lost (a timeout, a 5xx), or refused unapplied
// (throttled). It counts the bucket writes it applied.
type bucketFaultAPI struct {
	store.API
	mu      sync.Mutex
	fault   func(n int) (apply bool, err error) // n: the bucket write's number, from 1
	calls   int
	applied int
}

func (f *bucketFaultAPI) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	k, _ := in.Key[store.KeyAttribute].(*types.AttributeValueMemberS)
	if k == nil || !strings.Contains(k.Value, store.BucketInfix) {
		return f.API.UpdateItem(ctx, in, opts...)
	}
	f.mu.Lock()
	f.calls++
	apply, ferr := f.fault(f.calls)
	f.mu.Unlock()
	if !apply {
		return nil, ferr
	}
	out, err := f.API.UpdateItem(ctx, in, opts...)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.applied++
	f.mu.Unlock()
	if ferr != nil {
		return nil, ferr
	}
	return out, nil
}

func (f *bucketFaultAPI) counts() (calls, applied int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls, f.applied
}

// updateErr is err as the SDK returns it from UpdateItem.
func updateErr(err error) error {
	return &smithy.OperationError{ServiceID: "DynamoDB", OperationName: "UpdateItem", Err: err}
}

// answer is the error of an answer with HTTP status status.
func answer(status int, err error) error {
	return &awshttp.ResponseError{ResponseError: &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}}, Err: err,
	}}
}

// A bucket write that may have been applied (its answer lost to a
// timeout or a 5xx) is counted exactly once: its counts are given up with
// one warning, never written again. A throttled write was not applied:
// its counts are kept and written once, later.
func TestFlushNeverCountsAWriteTwice(t *testing.T) {
	timeout := updateErr(&smithy.CanceledError{Err: context.DeadlineExceeded})
	lost500 := updateErr(&retry.MaxAttemptsError{Attempt: 1, Err: answer(500, &types.InternalServerError{Message: aws.String("internal")})})
	throttled := updateErr(&retry.MaxAttemptsError{Attempt: 3, Err: answer(400, &types.ProvisionedThroughputExceededException{Message: aws.String("rate")})})
	tests := []struct {
		name  string
		fault func(n int) (bool, error)
		// First flush; the bucket writes and the writes applied in all.
		dropped, failed, written int
		calls, applied           int
	}{
		{"timeout once sent", func(n int) (bool, error) { return true, timeout }, 1, 0, 0, 1, 1},
		{"500 once applied", func(n int) (bool, error) {
			if n == 1 {
				return true, lost500
			}
			return true, nil
		}, 1, 0, 0, 1, 1},
		{"throttled", func(n int) (bool, error) {
			if n == 1 {
				return false, throttled
			}
			return true, nil
		}, 0, 1, 0, 2, 1},
	}
	srv := dynalite.Start(t)
	table := srv.NewTable(t)
	reader := store.New(srv.Client(), table)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			id := fmt.Sprintf("svc-%d", i)
			db := &bucketFaultAPI{API: srv.Client(), fault: tt.fault}
			logs := &logbuf.Buffer{}
			clk := &clock{now: time.Now()}
			b := newBreaker(store.New(db, table).WithLogger(quiet()), Options{Logger: slog.New(slog.NewJSONHandler(logs, nil)), Now: clk.Now})
			// 25 % failures: not urgent, so no evaluation; the bucket is
			// written once it is closed.
			if _, err := b.Report(ctx, id, []api.Outcome{{Success: ptr(true)}, {Success: ptr(true)}, {Success: ptr(true)}, {Success: ptr(false)}}); err != nil {
				t.Fatal(err)
			}
			starts := WindowStarts(clk.Now().Add(time.Minute), 3*time.Minute)
			clk.Add(policy.BucketSize)
			res, err := b.Flush(ctx)
			if err == nil || res.Dropped != tt.dropped || res.Failed != tt.failed || res.Written != tt.written {
				t.Fatalf("first flush = %+v, %v; want %d dropped, %d failed, %d written", res, err, tt.dropped, tt.failed, tt.written)
			}
			warned := logs.WithMsg(t, msgMaybeApplied)
			if tt.dropped == 1 {
				if len(warned) != 1 || warned[0]["calls"] != 4.0 || warned[0]["failures"] != 1.0 || warned[0]["buckets"] != 1.0 {
					t.Errorf("warnings %v; want one naming 1 bucket of 4 calls, 1 failure", warned)
				}
			} else if len(warned) != 0 {
				t.Errorf("warnings %v for counts that were not applied", warned)
			}
			// Later flushes, past any retry pause: a kept write goes out
			// once; a dropped one never again.
			for range 3 {
				clk.Add(2 * time.Second)
				if _, err := b.Flush(ctx); err != nil {
					t.Fatalf("later flush: %v", err)
				}
			}
			if b.Pending() != 0 {
				t.Errorf("pending %d, want 0", b.Pending())
			}
			if calls, applied := db.counts(); calls != tt.calls || applied != tt.applied {
				t.Errorf("%d bucket writes, %d applied; want %d, %d", calls, applied, tt.calls, tt.applied)
			}
			got, err := reader.GetBuckets(ctx, id, starts)
			if err != nil {
				t.Fatal(err)
			}
			var sum circuit.Counts
			for _, bk := range got {
				sum = sum.Add(bk.Counts)
			}
			if want := (circuit.Counts{Calls: 4, Failures: 1}); sum != want {
				t.Errorf("table holds %+v, want %+v: counted exactly once", sum, want)
			}
		})
	}
}
