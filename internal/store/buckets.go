package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http/httptrace"
	"slices"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
)

// Key infixes of the items next to a circuit: its counter buckets and its
// probe lease slots. A service ID cannot hold '#', so these keys never
// collide with a circuit's, and they all begin with the service ID (what an
// IAM dynamodb:LeadingKeys condition matches).
const (
	BucketInfix = "#b#"
	LeaseInfix  = "#lease#"
)

// BucketShards is the number of items each counter bucket is split
// into. An execution environment writes one of them, picked at random when
// it starts (see AddCounts), so that the writes of a fleet to one bucket
// spread over BucketShards items: 10,000 environments that all write in
// the first second of an outage put about 313 writes a second on each,
// under a third of DynamoDB's 1,000 write units per item and second. A
// window read (GetBuckets) reads every shard of every bucket.
const BucketShards = 32

// BucketKey is the key of shard shard (0 to BucketShards-1) of the counter
// bucket of service id that starts at start:
// "<id>#b#<unix seconds>#<shard>".
func BucketKey(id string, start time.Time, shard int) string {
	return id + BucketInfix + strconv.FormatInt(start.Unix(), 10) + "#" + strconv.Itoa(shard)
}

// bucketRecord is the item layout of a counter bucket shard.
type bucketRecord struct {
	ID       string `dynamodbav:"id"`
	Start    int64  `dynamodbav:"bucketStart"`
	Calls    int64  `dynamodbav:"calls"`
	Failures int64  `dynamodbav:"failures"`
	Slow     int64  `dynamodbav:"slow"`
	Runs     int64  `dynamodbav:"runs"`
	Writes   int64  `dynamodbav:"writes"`
}

// BucketShard is what one shard item of a counter bucket holds.
type BucketShard struct {
	// Start is the start of the bucket; Shard the shard's number.
	Start time.Time
	Shard int
	// Counts are the outcomes added to this shard.
	circuit.Counts
	// Writes is the number of AddCounts calls the shard took.
	Writes int64
}

// AddCounts adds c to shard shard of the bucket of service id that starts
// at start, with one UpdateItem of atomic ADDs, so that concurrent writers
// never lose a count, and counts the write in the item's writes
// attribute. It returns the shard as the write left it (ReturnValues
// UPDATED_NEW): its Writes says how many writes of this bucket's shard
// came first, which lets a fleet's writers sample who reads the window
// (0 when the table did not say; the error is nil once the counts were
// added, so that they are never added twice).
// The SDK retries the write only when it was throttled: a write whose
// answer was lost may have been applied, and is never sent again. Such an
// error is Ambiguous; an error of a write that was throttled, refused or
// never sent is not.
// expiresAt (the table's TTL attribute, in seconds) is set on every
// write; DynamoDB deletes the item some time after it.
func (s *Store) AddCounts(ctx context.Context, id string, start time.Time, shard int, c circuit.Counts, expiresAt time.Time) (BucketShard, error) {
	if shard < 0 || shard >= BucketShards {
		return BucketShard{}, fmt.Errorf("store: add counts to %q: shard %d outside 0..%d", id, shard, BucketShards-1)
	}
	k := BucketKey(id, start, shard)
	e := newExpr()
	adds := e.name("calls") + " " + e.value(num(c.Calls)) + ", " +
		e.name("failures") + " " + e.value(num(c.Failures)) + ", " +
		e.name("slow") + " " + e.value(num(c.Slow)) + ", " +
		e.name("runs") + " " + e.value(num(c.Runs)) + ", " +
		e.name("writes") + " " + e.value(num(1))
	e.set("bucketStart", num(start.Unix()))
	e.set(TTLAttribute, num(expiresAt.Unix()))
	tr := &sendTrace{}
	out, err := s.db.UpdateItem(httptrace.WithClientTrace(ctx, tr.trace()), &dynamodb.UpdateItemInput{
		TableName:                 aws.String(s.table),
		Key:                       key(k),
		UpdateExpression:          aws.String(e.update() + " ADD " + adds),
		ExpressionAttributeNames:  e.names,
		ExpressionAttributeValues: e.values,
		ReturnValues:              types.ReturnValueUpdatedNew,
	}, onlyThrottlingRetried)
	if err != nil {
		return BucketShard{}, fmt.Errorf("store: add counts to %s: %w", k, tr.settle(err))
	}
	// The counts were added: what the table returned is only told, and a
	// shard it did not return (or returned unreadable) has Writes 0.
	got := BucketShard{Start: start.UTC(), Shard: shard}
	var r bucketRecord
	if out != nil && len(out.Attributes) > 0 && attributevalue.UnmarshalMap(out.Attributes, &r) == nil {
		got.Counts = circuit.Counts{Calls: r.Calls, Failures: r.Failures, Slow: r.Slow, Runs: r.Runs}
		got.Writes = r.Writes
	}
	return got, nil
}

// TTLAttribute is the table's time-to-live attribute, in Unix seconds.
const TTLAttribute = "expiresAt"

// GetBucketShards reads every shard of the buckets of service id that
// start at starts (len(starts) × BucketShards keys), by key with
// eventually consistent BatchGetItem calls of at most 100 keys: half the
// read units of a strongly consistent read, and a read may miss writes of
// about the last second. Shards never written are absent.
func (s *Store) GetBucketShards(ctx context.Context, id string, starts []time.Time) ([]BucketShard, error) {
	keys := make([]string, 0, len(starts)*BucketShards)
	for _, st := range starts {
		for shard := range BucketShards {
			keys = append(keys, BucketKey(id, st, shard))
		}
	}
	items, err := s.batchGet(ctx, keys, false)
	if err != nil {
		return nil, fmt.Errorf("store: read %d bucket shards of %q: %w", len(keys), id, err)
	}
	out := make([]BucketShard, 0, len(items))
	for _, item := range items {
		var r bucketRecord
		if err := attributevalue.UnmarshalMap(item, &r); err != nil {
			return nil, fmt.Errorf("store: decode bucket item: %w", err)
		}
		_, shard, err := parseBucketKey(r.ID)
		if err != nil {
			return nil, fmt.Errorf("store: bucket item %q: %w", r.ID, err)
		}
		out = append(out, BucketShard{
			Start:  time.Unix(r.Start, 0).UTC(),
			Shard:  shard,
			Counts: circuit.Counts{Calls: r.Calls, Failures: r.Failures, Slow: r.Slow, Runs: r.Runs},
			Writes: r.Writes,
		})
	}
	return out, nil
}

// GetBuckets reads the buckets of service id that start at starts, every
// shard of each (see GetBucketShards), and returns each bucket's counts
// summed over its shards, ordered by start. Buckets never written are
// absent.
func (s *Store) GetBuckets(ctx context.Context, id string, starts []time.Time) ([]circuit.Bucket, error) {
	shards, err := s.GetBucketShards(ctx, id, starts)
	if err != nil {
		return nil, err
	}
	return SumShards(shards), nil
}

// SumShards sums shards per bucket start, ordered by start. A shard that
// appears more than once (as read, and as a write returned it) counts
// once, with the larger of each count: counts only grow, so that is the
// later of the two.
func SumShards(shards []BucketShard) []circuit.Bucket {
	type at struct {
		start int64
		shard int
	}
	latest := map[at]circuit.Counts{}
	for _, sh := range shards {
		k := at{sh.Start.Unix(), sh.Shard}
		c, ok := latest[k]
		if !ok {
			latest[k] = sh.Counts
			continue
		}
		latest[k] = circuit.Counts{
			Calls: max(c.Calls, sh.Calls), Failures: max(c.Failures, sh.Failures),
			Slow: max(c.Slow, sh.Slow), Runs: max(c.Runs, sh.Runs),
		}
	}
	sums := map[int64]circuit.Counts{}
	for k, c := range latest {
		sums[k.start] = sums[k.start].Add(c)
	}
	out := make([]circuit.Bucket, 0, len(sums))
	for start, c := range sums {
		out = append(out, circuit.Bucket{Start: time.Unix(start, 0).UTC(), Counts: c})
	}
	slices.SortFunc(out, func(a, b circuit.Bucket) int { return a.Start.Compare(b.Start) })
	return out
}

// batchGet reads items by key with BatchGetItem calls of at most 100
// keys, strongly consistent when consistent is set. Keys that DynamoDB leaves unprocessed (it
// does so under throttling) are asked again after a jittered exponential
// back-off, until ctx ends; the items read so far are returned with the
// error.
func (s *Store) batchGet(ctx context.Context, ids []string, consistent bool, opts ...func(*dynamodb.Options)) ([]map[string]types.AttributeValue, error) {
	var out []map[string]types.AttributeValue
	for start := 0; start < len(ids); start += maxBatchGet {
		end := min(start+maxBatchGet, len(ids))
		pending := make([]map[string]types.AttributeValue, 0, end-start)
		for _, id := range ids[start:end] {
			pending = append(pending, key(id))
		}
		for round := 1; len(pending) > 0; round++ {
			res, err := s.db.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{
				RequestItems: map[string]types.KeysAndAttributes{
					s.table: {Keys: pending, ConsistentRead: aws.Bool(consistent)},
				},
			}, opts...)
			if err != nil {
				return out, err
			}
			out = append(out, res.Responses[s.table]...)
			pending = res.UnprocessedKeys[s.table].Keys
			if len(pending) == 0 {
				break
			}
			if err := sleep(ctx, unprocessedBackoff(round)); err != nil {
				return out, fmt.Errorf("%d keys unprocessed: %w", len(pending), err)
			}
		}
	}
	return out, nil
}

// unprocessedBackoff is the pause before asking again for keys left
// unprocessed round times in a row: full jitter over 2 ms doubling per
// round, capped at 100 ms.
func unprocessedBackoff(round int) time.Duration {
	ceiling := min(2*time.Millisecond<<min(round-1, 10), 100*time.Millisecond)
	return rand.N(ceiling) + time.Millisecond/10
}
