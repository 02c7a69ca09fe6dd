package breaker

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dbfault"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dynalite"
)

// lostAnswerAPI applies the first UpdateItem it sees, then waits for the
// caller's deadline and returns its error, as when the answer of an
// applied claim arrives too late. Later calls pass.
type lostAnswerAPI struct {
	store.API
	lost atomic.Bool
}

func (l *lostAnswerAPI) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	if !l.lost.CompareAndSwap(false, true) {
		return l.API.UpdateItem(ctx, in, opts...)
	}
	if _, err := l.API.UpdateItem(context.WithoutCancel(ctx), in, opts...); err != nil {
		return nil, err
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

// A claim applied by the table whose answer is lost leaves a lease that
// nobody holds. Extension A denies its caller, and gives the lease back by
// its token, so another extension can probe at once rather than after the
// probe timeout.
func TestLostClaimIsGivenBack(t *testing.T) {
	db := dynalite.Start(t)
	table := db.NewTable(t)
	lossy := &lostAnswerAPI{API: db.Client()}
	stA := store.New(lossy, table).WithLogger(quiet())
	stB := store.New(db.Client(), table).WithLogger(quiet())
	ctx := context.Background()
	if err := stB.Write(ctx, circuit.New("svc"), circuit.Circuit{ID: "svc", State: circuit.HalfOpen, Version: 1}, circuit.Transition); err != nil {
		t.Fatal(err)
	}
	half, _, err := stB.Get(ctx, "svc")
	if err != nil {
		t.Fatal(err)
	}

	// The claim timeout also bounds the release: generous, for a loaded
	// machine.
	a := New(func(context.Context) (*store.Store, error) { return stA, nil }, Options{Logger: quiet(), ClaimTimeout: 500 * time.Millisecond})
	if got := a.Admit(ctx, half, time.Now(), true); got.Allowed || got.Probe != "" {
		t.Fatalf("extension A's lost claim: %+v, want its caller denied", got)
	}
	if !lossy.lost.Load() {
		t.Fatal("the claim never reached the table")
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := a.bg.Wait(wctx); err != nil {
		t.Fatalf("giving back the lost claim: %v", err)
	}

	b := New(func(context.Context) (*store.Store, error) { return stB, nil }, Options{Logger: quiet(), ClaimTimeout: time.Second})
	if got := b.Admit(ctx, half, time.Now(), true); !got.Allowed || got.Probe == "" {
		t.Errorf("extension B right after A's lost claim: %+v, want a probe (the slot is held by a claim nobody holds)", got)
	}
}

// With the table throttling writes, an OPEN circuit whose cool-down has
// ended is written at most once per BusyRetry by a busy extension, each a
// single request, so the SDK's retry quota is left for everything else.
func TestCooldownEndBacksOffOnAThrottledTable(t *testing.T) {
	db := dynalite.Start(t)
	table := db.NewTable(t)
	var throttle atomic.Bool
	var throttleReads atomic.Int64
	tr := &dbfault.Transport{Fault: func(op string, _ []byte) dbfault.Action {
		switch {
		case throttle.Load() && op == "UpdateItem":
			return dbfault.Throttle
		case op == "GetItem" && throttleReads.Add(-1) >= 0:
			return dbfault.Throttle
		}
		return dbfault.Pass
	}}
	st := store.New(tr.Wrap(db.Client()), table).WithLogger(quiet())
	ctx := context.Background()
	open := circuit.Circuit{ID: "svc", State: circuit.Open, Version: 1, OpenCount: 1, RetryAt: time.Now().Add(-time.Second).Truncate(time.Millisecond)}
	if err := st.Write(ctx, circuit.New("svc"), open, circuit.Transition); err != nil {
		t.Fatal(err)
	}
	open, _, err := st.Get(ctx, "svc")
	if err != nil {
		t.Fatal(err)
	}

	const interval = 200 * time.Millisecond
	b := New(func(context.Context) (*store.Store, error) { return st, nil }, Options{Logger: quiet(), BusyRetry: interval, ClaimTimeout: 100 * time.Millisecond})
	throttle.Store(true)
	before := tr.Count("UpdateItem")
	start := time.Now()
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < time.Second {
				if b.Admit(ctx, open, time.Now(), true).Allowed {
					allowed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	throttle.Store(false)
	attempts := tr.Count("UpdateItem") - before
	most := int(elapsed/interval) + 1
	if attempts < 1 || attempts > most {
		t.Errorf("%d UpdateItem requests in %s with a %s pause, want 1 to %d", attempts, elapsed.Round(time.Millisecond), interval, most)
	}
	if allowed.Load() != 0 {
		t.Errorf("%d callers allowed while the cool-down could not end", allowed.Load())
	}
	// The SDK still retries ordinary calls: a read throttled once succeeds.
	throttleReads.Store(1)
	if _, _, err := st.Get(ctx, "svc"); err != nil {
		t.Errorf("a read throttled once after the storm: %v, want the SDK to retry it", err)
	}
}
