package store

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

func TestClaimLeaseAdmitsExactlyK(t *testing.T) {
	s, _, _ := newTestStore(t)
	for _, k := range []int{1, 2, 3} {
		t.Run("K="+string(rune('0'+k)), func(t *testing.T) {
			id := "svc" + string(rune('0'+k))
			now := time.Now()
			var won atomic.Int64
			slots := make([]atomic.Int64, k)
			var wg sync.WaitGroup
			for g := range 20 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					l, err := s.ClaimLease(context.Background(), id, k, g%k, "holder", 7, 10*time.Second, now)
					switch {
					case err == nil:
						won.Add(1)
						slots[l.Slot].Add(1)
					case errors.Is(err, ErrLeaseBusy):
					default:
						t.Error(err)
					}
				}()
			}
			wg.Wait()
			if won.Load() != int64(k) {
				t.Fatalf("%d claims won, want %d", won.Load(), k)
			}
			for i := range slots {
				if slots[i].Load() != 1 {
					t.Errorf("slot %d claimed %d times", i, slots[i].Load())
				}
			}
		})
	}
}

func TestLeaseReleaseAndExpiry(t *testing.T) {
	s, _, _ := newTestStore(t)
	ctx := context.Background()
	now := time.Now()
	l, err := s.ClaimLease(ctx, "svc", 1, 0, "a", 3, 10*time.Second, now)
	if err != nil || l.Version != 3 || l.Slot != 0 {
		t.Fatalf("claim = %+v, %v", l, err)
	}
	_, err = s.ClaimLease(ctx, "svc", 1, 0, "b", 3, 10*time.Second, now.Add(time.Second))
	var busy *BusyError
	if !errors.As(err, &busy) || (!busy.Until.IsZero() && !busy.Until.Equal(l.Until.Truncate(time.Millisecond))) {
		t.Logf("busy until %v", busy.Until)
		t.Fatalf("second claim = %v, want busy until %v", err, l.Until)
	}
	// A wrong token does not release.
	if err := s.ReleaseLease(ctx, Lease{ID: "svc", Slot: 0, Token: "other"}); !errors.Is(err, ErrConflict) {
		t.Fatalf("release with another token = %v, want ErrConflict", err)
	}
	if err := s.ReleaseLease(ctx, l); err != nil {
		t.Fatal(err)
	}
	l2, err := s.ClaimLease(ctx, "svc", 1, 0, "b", 3, 10*time.Second, now.Add(time.Second))
	if err != nil {
		t.Fatalf("claim after release = %v", err)
	}
	// Holder b vanishes; once its lease expired, c may claim.
	if _, err := s.ClaimLease(ctx, "svc", 1, 0, "c", 3, 10*time.Second, now.Add(10*time.Second)); !errors.Is(err, ErrLeaseBusy) {
		t.Fatalf("claim before expiry = %v, want busy", err)
	}
	l3, err := s.ClaimLease(ctx, "svc", 1, 0, "c", 3, 10*time.Second, now.Add(12*time.Second))
	if err != nil {
		t.Fatalf("claim after expiry = %v", err)
	}
	// b's late release must not free c's lease.
	if err := s.ReleaseLease(ctx, l2); !errors.Is(err, ErrConflict) {
		t.Fatalf("late release = %v, want ErrConflict", err)
	}
	if _, err := s.ClaimLease(ctx, "svc", 1, 0, "d", 3, 10*time.Second, now.Add(13*time.Second)); !errors.Is(err, ErrLeaseBusy) {
		t.Fatalf("claim while c holds = %v, want busy", err)
	}
	if err := s.ReleaseLease(ctx, l3); err != nil {
		t.Fatal(err)
	}
}

// A claim whose answer is lost after DynamoDB applied it is retried by
// the SDK; the retry finds the slot held by the claim's own token, which
// is a success, not a busy slot that nobody holds.
func TestClaimLeaseRetriedBySDKSucceeds(t *testing.T) {
	var armed atomic.Bool
	s, tr := newFaultyStore(t, loseFirst("UpdateItem", &armed))
	armed.Store(true)
	l, err := s.ClaimLease(context.Background(), "svc", 1, 0, "a", 1, 10*time.Second, time.Now())
	if err != nil {
		t.Fatalf("claim = %v, want the lease its first attempt took", err)
	}
	if n := tr.Count("UpdateItem"); n != 2 {
		t.Fatalf("%d UpdateItem requests, want 2 (the applied claim and the SDK's retry)", n)
	}
	if err := s.ReleaseLease(context.Background(), l); err != nil {
		t.Errorf("releasing the claimed lease = %v, want it held by the returned token", err)
	}
}

// A claim whose call fails without an answer reports the claim it sent,
// so that the caller can release it by token whether or not it was
// applied; releasing one that was never applied is harmless.
func TestClaimLeaseUncertain(t *testing.T) {
	for _, applied := range []bool{true, false} {
		t.Run(map[bool]string{true: "applied", false: "not applied"}[applied], func(t *testing.T) {
			s, _, _ := newTestStore(t)
			inner := s.db
			s.db = lostClaimAPI{API: inner, apply: applied}
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			_, err := s.ClaimLease(ctx, "svc", 1, 0, "a", 1, 10*time.Second, time.Now())
			var ue *UncertainClaimError
			if !errors.As(err, &ue) || !errors.Is(err, context.DeadlineExceeded) || ue.Lease.Token == "" {
				t.Fatalf("claim = %v, want an UncertainClaimError wrapping the deadline", err)
			}
			s.db = inner
			rerr := s.ReleaseLease(context.Background(), ue.Lease)
			if applied && rerr != nil || !applied && !errors.Is(rerr, ErrConflict) {
				t.Errorf("release of the uncertain claim = %v", rerr)
			}
			if _, err := s.ClaimLease(context.Background(), "svc", 1, 0, "b", 1, 10*time.Second, time.Now()); err != nil {
				t.Errorf("another claim after the release = %v, want the slot free", err)
			}
		})
	}
}

// lostClaimAPI applies (or not) every UpdateItem, then waits for the
// caller's deadline and returns its error, as when the answer is lost.
type lostClaimAPI struct {
	API
	apply bool
}

func (l lostClaimAPI) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	if l.apply {
		if _, err := l.API.UpdateItem(context.WithoutCancel(ctx), in, opts...); err != nil {
			return nil, err
		}
	}
	<-ctx.Done()
	return nil, ctx.Err()
}
