package store

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dbfault"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dynalite"
)

func TestAddCountsConcurrentlyLosesNothing(t *testing.T) {
	s, _, _ := newTestStore(t)
	ctx := context.Background()
	b0 := time.Unix(1_800_000_000, 0).UTC()
	b1 := b0.Add(5 * time.Second)
	const writers, rounds = 20, 10
	var wg sync.WaitGroup
	errs := make(chan error, writers*rounds)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				start := b0
				if (w+r)%2 == 1 {
					start = b1
				}
				_, err := s.AddCounts(ctx, "svc", start, w%3, circuit.Counts{Calls: 3, Failures: 2, Slow: 1}, start.Add(time.Minute))
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.GetBuckets(ctx, "svc", []time.Time{b0, b1, b1.Add(5 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("buckets = %+v, want 2", got)
	}
	var sum circuit.Counts
	for _, b := range got {
		if !b.Start.Equal(b0) && !b.Start.Equal(b1) {
			t.Errorf("bucket start %v", b.Start)
		}
		sum = sum.Add(b.Counts)
	}
	want := circuit.Counts{Calls: 3 * writers * rounds, Failures: 2 * writers * rounds, Slow: writers * rounds}
	if sum != want {
		t.Errorf("sum = %+v, want %+v", sum, want)
	}
	// The circuit item is untouched by bucket writes.
	if _, found, err := s.Get(ctx, "svc"); err != nil || found {
		t.Errorf("circuit item: found %v, %v", found, err)
	}
}

func TestBucketAndLeaseKeys(t *testing.T) {
	tests := []struct{ got, want string }{
		{BucketKey("payments", time.Unix(1700000005, 0), 0), "payments#b#1700000005#0"},
		{BucketKey("payments", time.Unix(1700000005, 0), 31), "payments#b#1700000005#31"},
		{LeaseKey("payments", 0), "payments#lease#0"},
		{LeaseKey("a-b", 3), "a-b#lease#3"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("key %q, want %q", tt.got, tt.want)
		}
	}
}

// Every shard key parses back to its service, bucket start and shard.
func TestBucketKeyRoundTrip(t *testing.T) {
	start := time.Unix(1_800_000_005, 0).UTC()
	for _, id := range []string{"payments", "a-b", "x"} {
		for shard := range BucketShards {
			k := BucketKey(id, start, shard)
			gotID, kind, err := ParseKey(k)
			if err != nil || gotID != id || kind != KindBucket {
				t.Fatalf("ParseKey(%q) = %q, %q, %v", k, gotID, kind, err)
			}
			gotStart, gotShard, err := parseBucketKey(k)
			if err != nil || !gotStart.Equal(start) || gotShard != shard {
				t.Fatalf("parseBucketKey(%q) = %v, %d, %v", k, gotStart, gotShard, err)
			}
		}
	}
}

func TestAddCountsReturnsTheShard(t *testing.T) {
	s, _, _ := newTestStore(t)
	ctx := context.Background()
	start := time.Unix(1_800_000_000, 0).UTC()
	exp := start.Add(time.Hour)
	tests := []struct {
		shard int
		add   circuit.Counts
		want  BucketShard
	}{
		{3, circuit.Counts{Calls: 5, Failures: 2}, BucketShard{Start: start, Shard: 3, Counts: circuit.Counts{Calls: 5, Failures: 2}, Writes: 1}},
		{3, circuit.Counts{Calls: 1, Slow: 1, Runs: 1}, BucketShard{Start: start, Shard: 3, Counts: circuit.Counts{Calls: 6, Failures: 2, Slow: 1, Runs: 1}, Writes: 2}},
		{4, circuit.Counts{Calls: 2}, BucketShard{Start: start, Shard: 4, Counts: circuit.Counts{Calls: 2}, Writes: 1}},
		{3, circuit.Counts{Calls: 1}, BucketShard{Start: start, Shard: 3, Counts: circuit.Counts{Calls: 7, Failures: 2, Slow: 1, Runs: 1}, Writes: 3}},
	}
	for i, tt := range tests {
		got, err := s.AddCounts(ctx, "svc", start, tt.shard, tt.add, exp)
		if err != nil {
			t.Fatal(err)
		}
		if got != tt.want {
			t.Errorf("write %d: %+v, want %+v", i, got, tt.want)
		}
	}
	for _, bad := range []int{-1, BucketShards} {
		if _, err := s.AddCounts(ctx, "svc", start, bad, circuit.Counts{Calls: 1}, exp); err == nil {
			t.Errorf("shard %d: no error", bad)
		}
	}
	// The shards, read back, sum to one bucket.
	shards, err := s.GetBucketShards(ctx, "svc", []time.Time{start})
	if err != nil {
		t.Fatal(err)
	}
	if len(shards) != 2 {
		t.Fatalf("shards = %+v, want 2", shards)
	}
	got, err := s.GetBuckets(ctx, "svc", []time.Time{start, start.Add(5 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	want := []circuit.Bucket{{Start: start, Counts: circuit.Counts{Calls: 9, Failures: 2, Slow: 1, Runs: 1}}}
	if len(got) != 1 || got[0] != want[0] {
		t.Errorf("buckets = %+v, want %+v", got, want)
	}
	// Each shard item has the TTL attribute.
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(s.table), Key: key(BucketKey("svc", start, 4))})
	if err != nil {
		t.Fatal(err)
	}
	if ttl, ok := out.Item[TTLAttribute].(*types.AttributeValueMemberN); !ok || ttl.Value != strconv.FormatInt(exp.Unix(), 10) {
		t.Errorf("expiresAt = %v, want %d", out.Item[TTLAttribute], exp.Unix())
	}
}

func TestSumShards(t *testing.T) {
	b0 := time.Unix(1_800_000_000, 0).UTC()
	b1 := b0.Add(5 * time.Second)
	c := func(calls, failures int64) circuit.Counts { return circuit.Counts{Calls: calls, Failures: failures} }
	tests := []struct {
		name   string
		shards []BucketShard
		want   []circuit.Bucket
	}{
		{"none", nil, []circuit.Bucket{}},
		{"shards of two buckets, ordered by start", []BucketShard{
			{Start: b1, Shard: 0, Counts: c(1, 1)},
			{Start: b0, Shard: 5, Counts: c(10, 2)},
			{Start: b0, Shard: 31, Counts: c(4, 4)},
		}, []circuit.Bucket{{Start: b0, Counts: c(14, 6)}, {Start: b1, Counts: c(1, 1)}}},
		{"a shard read and returned by a write counts once, the later", []BucketShard{
			{Start: b0, Shard: 2, Counts: c(10, 2)},
			{Start: b0, Shard: 2, Counts: c(12, 3)},
			{Start: b0, Shard: 3, Counts: c(1, 0)},
		}, []circuit.Bucket{{Start: b0, Counts: c(13, 3)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := SumShards(tt.shards)
			if len(got) != len(tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("bucket %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

// A window read asks for every shard, in calls of at most 100 keys (that
// it reads eventually consistent is TestEventualReadsOnlyForTheCache's).
func TestGetBucketShardsReadsEveryShard(t *testing.T) {
	s, api, _ := newTestStore(t)
	ctx := context.Background()
	start := time.Unix(1_800_000_000, 0).UTC()
	starts := []time.Time{start, start.Add(5 * time.Second), start.Add(10 * time.Second), start.Add(15 * time.Second)}
	if _, err := s.AddCounts(ctx, "svc", starts[3], BucketShards-1, circuit.Counts{Calls: 1}, start.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	before := api.Reads.Load()
	got, err := s.GetBuckets(ctx, "svc", starts)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Calls != 1 || !got[0].Start.Equal(starts[3]) {
		t.Errorf("buckets = %+v", got)
	}
	calls := api.Reads.Load() - before
	if want := int64((len(starts)*BucketShards + maxBatchGet - 1) / maxBatchGet); calls != want {
		t.Errorf("BatchGetItem calls = %d, want %d", calls, want)
	}
}

// garbledReturn answers UpdateItem with attributes that do not decode.
type garbledReturn struct{ API }

func (g garbledReturn) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	out, err := g.API.UpdateItem(ctx, in, opts...)
	if err == nil {
		out.Attributes = map[string]types.AttributeValue{"writes": &types.AttributeValueMemberS{Value: "many"}}
	}
	return out, err
}

// Once the counts were added, AddCounts reports success even when what
// the table returned cannot be read: a retry would count them twice.
func TestAddCountsSucceedsWhateverItReturns(t *testing.T) {
	s, _, _ := newTestStore(t)
	g := New(garbledReturn{s.db}, s.table)
	ctx := context.Background()
	start := time.Unix(1_800_000_000, 0).UTC()
	got, err := g.AddCounts(ctx, "svc", start, 1, circuit.Counts{Calls: 2, Failures: 1}, start.Add(time.Hour))
	if err != nil || got.Writes != 0 || got.Shard != 1 {
		t.Fatalf("AddCounts = %+v, %v; want success with Writes 0", got, err)
	}
	bs, err := s.GetBuckets(ctx, "svc", []time.Time{start})
	if err != nil || len(bs) != 1 || bs[0].Calls != 2 {
		t.Fatalf("buckets = %+v, %v", bs, err)
	}
}

// lateAnswer forwards a request, so that DynamoDB applies it, then ends
// the caller's context and returns its error, as when the deadline passes
// while the answer is on its way.
type lateAnswer struct {
	base   http.RoundTripper
	cancel context.CancelFunc
}

func (l lateAnswer) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := l.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
	l.cancel()
	<-req.Context().Done()
	return nil, req.Context().Err()
}

// A bucket write is sent again only when DynamoDB refused it for its
// rate: one that may have been applied fails Ambiguous and is counted
// exactly once; one that was throttled, or never sent, fails not
// Ambiguous and adds nothing.
func TestAddCountsNeverCountsTwice(t *testing.T) {
	srv := dynalite.Start(t)
	table := srv.NewTable(t)
	plain := New(srv.Client(), table)
	start := time.Unix(1_800_000_000, 0).UTC()
	add := circuit.Counts{Calls: 4, Failures: 3}
	onUpdate := func(actions ...dbfault.Action) func(string, []byte) dbfault.Action {
		var n atomic.Int32
		return func(op string, _ []byte) dbfault.Action {
			if op != "UpdateItem" {
				return dbfault.Pass
			}
			if i := int(n.Add(1)) - 1; i < len(actions) {
				return actions[i]
			}
			return dbfault.Pass
		}
	}
	type call struct {
		store *Store
		ctx   context.Context
		sent  func() int // UpdateItem requests that reached the transport
	}
	faulty := func(fault func(string, []byte) dbfault.Action) func(*testing.T) call {
		return func(*testing.T) call {
			tr := &dbfault.Transport{Fault: fault}
			return call{New(tr.Wrap(srv.Client()), table), context.Background(), func() int { return tr.Count("UpdateItem") }}
		}
	}
	tests := []struct {
		name      string
		setup     func(t *testing.T) call
		wantErr   bool
		ambiguous bool
		requests  int // -1: not counted
		added     int64
	}{
		{"answer lost (500)", faulty(onUpdate(dbfault.LoseAnswer)), true, true, 1, 1},
		{"throttled twice, then written", faulty(onUpdate(dbfault.Throttle, dbfault.Throttle)), false, false, 3, 1},
		{"throttled, then answer lost", faulty(onUpdate(dbfault.Throttle, dbfault.LoseAnswer)), true, true, 2, 1},
		{"throttled every attempt", faulty(onUpdate(dbfault.Throttle, dbfault.Throttle, dbfault.Throttle)), true, false, 3, 0},
		{"deadline after sending", func(t *testing.T) call {
			ctx, cancel := context.WithCancel(context.Background())
			t.Cleanup(cancel)
			db := dynamodb.New(srv.Client().Options(), func(o *dynamodb.Options) {
				o.HTTPClient = &http.Client{Transport: lateAnswer{base: http.DefaultTransport, cancel: cancel}}
			})
			return call{New(db, table), ctx, nil}
		}, true, true, -1, 1},
		{"context ended before sending", func(t *testing.T) call {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return call{plain, ctx, nil}
		}, true, false, -1, 0},
		{"connection refused", func(t *testing.T) call {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			_ = ln.Close()
			return call{New(dynalite.NewClient("http://"+addr), table), context.Background(), nil}
		}, true, false, -1, 0},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.setup(t)
			id := "svc-" + strconv.Itoa(i)
			_, err := c.store.AddCounts(c.ctx, id, start, 0, add, start.Add(time.Hour))
			if (err != nil) != tt.wantErr || Ambiguous(err) != tt.ambiguous {
				t.Fatalf("AddCounts: %v (Ambiguous %v); want error %v, Ambiguous %v", err, Ambiguous(err), tt.wantErr, tt.ambiguous)
			}
			if c.sent != nil && c.sent() != tt.requests {
				t.Errorf("%d UpdateItem requests, want %d", c.sent(), tt.requests)
			}
			bs, err := plain.GetBuckets(context.Background(), id, []time.Time{start})
			if err != nil {
				t.Fatal(err)
			}
			var got circuit.Counts
			for _, b := range bs {
				got = got.Add(b.Counts)
			}
			if want := (circuit.Counts{Calls: add.Calls * tt.added, Failures: add.Failures * tt.added}); got != want {
				t.Errorf("table holds %+v, want %+v (the counts added %d times)", got, want, tt.added)
			}
		})
	}
}
