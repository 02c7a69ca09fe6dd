package store

import (
	"context"
	"fmt"
	"math/rand/v2"
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

// BucketKey is the key of the counter bucket of service id that starts at
// start: "<id>#b#<unix seconds>".
func BucketKey(id string, start time.Time) string {
	return id + BucketInfix + strconv.FormatInt(start.Unix(), 10)
}

// bucketRecord is the item layout of a counter bucket.
type bucketRecord struct {
	ID       string `dynamodbav:"id"`
	Start    int64  `dynamodbav:"bucketStart"`
	Calls    int64  `dynamodbav:"calls"`
	Failures int64  `dynamodbav:"failures"`
	Slow     int64  `dynamodbav:"slow"`
	Runs     int64  `dynamodbav:"runs"`
}

// AddCounts adds c to the bucket of service id that starts at start, with
// one UpdateItem of atomic ADDs, so that concurrent writers never lose a
// count. expiresAt (the table's TTL attribute, in seconds) is set on every
// write; DynamoDB deletes the item some time after it.
func (s *Store) AddCounts(ctx context.Context, id string, start time.Time, c circuit.Counts, expiresAt time.Time) error {
	e := newExpr()
	adds := e.name("calls") + " " + e.value(num(c.Calls)) + ", " +
		e.name("failures") + " " + e.value(num(c.Failures)) + ", " +
		e.name("slow") + " " + e.value(num(c.Slow)) + ", " +
		e.name("runs") + " " + e.value(num(c.Runs))
	e.set("bucketStart", num(start.Unix()))
	e.set(TTLAttribute, num(expiresAt.Unix()))
	_, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(s.table),
		Key:                       key(BucketKey(id, start)),
		UpdateExpression:          aws.String(e.update() + " ADD " + adds),
		ExpressionAttributeNames:  e.names,
		ExpressionAttributeValues: e.values,
	})
	if err != nil {
		return fmt.Errorf("store: add counts to %s: %w", BucketKey(id, start), err)
	}
	return nil
}

// TTLAttribute is the table's time-to-live attribute, in Unix seconds.
const TTLAttribute = "expiresAt"

// GetBuckets reads the buckets of service id that start at starts, by key
// with consistent BatchGetItem calls. Buckets never written are absent.
func (s *Store) GetBuckets(ctx context.Context, id string, starts []time.Time) ([]circuit.Bucket, error) {
	keys := make([]string, len(starts))
	for i, st := range starts {
		keys[i] = BucketKey(id, st)
	}
	items, err := s.batchGet(ctx, keys, true)
	if err != nil {
		return nil, fmt.Errorf("store: read %d buckets of %q: %w", len(keys), id, err)
	}
	out := make([]circuit.Bucket, 0, len(items))
	for _, item := range items {
		var r bucketRecord
		if err := attributevalue.UnmarshalMap(item, &r); err != nil {
			return nil, fmt.Errorf("store: decode bucket item: %w", err)
		}
		out = append(out, circuit.Bucket{
			Start:  time.Unix(r.Start, 0).UTC(),
			Counts: circuit.Counts{Calls: r.Calls, Failures: r.Failures, Slow: r.Slow, Runs: r.Runs},
		})
	}
	return out, nil
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
