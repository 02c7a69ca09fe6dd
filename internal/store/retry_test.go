package store

import (
	"context"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dbfault"
)

// On a throttled table the SDK retries a write; WithoutRetries makes one
// attempt per call, for every call a lookup makes.
func TestWithoutRetries(t *testing.T) {
	s, tr := newFaultyStore(t, func(string, []byte) dbfault.Action { return dbfault.Throttle })
	ctx := context.Background()
	next := circuit.New("svc")
	next.ConsecutiveFailures = 1
	calls := []struct {
		name string
		op   string
		call func(s *Store) error
	}{
		{"Write", "UpdateItem", func(s *Store) error { return s.Write(ctx, circuit.New("svc"), next, circuit.CounterUpdate) }},
		{"Get", "BatchGetItem", func(s *Store) error { _, _, err := s.Get(ctx, "svc"); return err }},
		{"ClaimLease", "UpdateItem", func(s *Store) error {
			_, err := s.ClaimLease(ctx, "svc", 1, 0, "a", 0, time.Second, t0)
			return err
		}},
		{"ReleaseLease", "UpdateItem", func(s *Store) error { return s.ReleaseLease(ctx, Lease{ID: "svc", Token: "x"}) }},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			for _, tt := range []struct {
				s    *Store
				want int
			}{{s.WithoutRetries(), 1}, {s, 3}} {
				before := tr.Count(c.op)
				if err := c.call(tt.s); err == nil {
					t.Fatal("call on a throttled table succeeded")
				}
				if n := tr.Count(c.op) - before; n != tt.want {
					t.Errorf("%d %s requests, want %d", n, c.op, tt.want)
				}
			}
		})
	}
}
