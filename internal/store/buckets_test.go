package store

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
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
				errs <- s.AddCounts(ctx, "svc", start, circuit.Counts{Calls: 3, Failures: 2, Slow: 1}, start.Add(time.Minute))
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
		{BucketKey("payments", time.Unix(1700000005, 0)), "payments#b#1700000005"},
		{LeaseKey("payments", 0), "payments#lease#0"},
		{LeaseKey("a-b", 3), "a-b#lease#3"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("key %q, want %q", tt.got, tt.want)
		}
	}
}
