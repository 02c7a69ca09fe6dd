package store_test

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
)

// ReadMany tells circuits whose item cannot be decoded apart, where
// GetMany serves them only while an override decides.
func ExampleStore_ReadMany() {
	db := dynamodb.New(dynamodb.Options{Region: "us-east-1", BaseEndpoint: aws.String("http://127.0.0.1:8000")})
	st := store.New(db, "circuits")
	got, err := st.ReadMany(context.Background(), []string{"payments", "orders"})
	if err != nil {
		fmt.Println(err)
		return
	}
	now := time.Now()
	for id, r := range got {
		switch {
		case r.Unreadable != nil && r.Circuit.ActiveOverride(now) == circuit.NoOverride:
			fmt.Printf("%s: unreadable (%v); callers follow their failure policy\n", id, r.Unreadable)
		case r.Unreadable != nil:
			fmt.Printf("%s: unreadable; %s decides\n", id, r.Circuit.Override)
		default:
			fmt.Printf("%s: %s\n", id, r.Circuit.EffectiveState(now))
		}
	}
}

// SumShards adds up the shards of each bucket; a shard seen twice (read,
// and returned by this environment's own write) counts once, the later.
func ExampleSumShards() {
	start := time.Unix(1_800_000_000, 0).UTC()
	buckets := store.SumShards([]store.BucketShard{
		{Start: start, Shard: 0, Counts: circuit.Counts{Calls: 40, Failures: 30}},
		{Start: start, Shard: 7, Counts: circuit.Counts{Calls: 10, Failures: 2}, Writes: 1},
		{Start: start, Shard: 7, Counts: circuit.Counts{Calls: 12, Failures: 3}, Writes: 2},
		{Start: start.Add(5 * time.Second), Shard: 3, Counts: circuit.Counts{Calls: 5, Failures: 5}},
	})
	for _, b := range buckets {
		fmt.Printf("%d: %d calls, %d failed\n", b.Start.Unix(), b.Calls, b.Failures)
	}
	// Output:
	// 1800000000: 52 calls, 33 failed
	// 1800000005: 5 calls, 5 failed
}

// A failed bucket write is sent again only when it was not applied: a
// write whose answer was lost may have added its counts already.
func ExampleAmbiguous() {
	db := dynamodb.New(dynamodb.Options{Region: "us-east-1", BaseEndpoint: aws.String("http://127.0.0.1:8000")})
	st := store.New(db, "circuits")
	start := time.Now().Truncate(5 * time.Second)
	_, err := st.AddCounts(context.Background(), "payments", start, 0, circuit.Counts{Calls: 10, Failures: 2}, start.Add(time.Hour))
	switch {
	case err == nil:
		fmt.Println("added")
	case store.Ambiguous(err):
		fmt.Println("maybe added: dropped, never sent again")
	case store.Permanent(err):
		fmt.Println("refused for good: dropped")
	default:
		fmt.Println("not added (throttled, never sent): kept for the next flush")
	}
}
