package breaker

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/api"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dynalite"
)

// A flush whose writes all fail returns one small error: a count and the
// first few, not every error joined (a log line over CloudWatch Logs'
// 256 KB event limit is cut).
func TestFlushErrorStaysSmall(t *testing.T) {
	srv := dynalite.Start(t)
	api0 := &failingAPI{API: srv.Client()}
	st := store.New(api0, srv.NewTable(t)).WithLogger(quiet())
	b := New(func(context.Context) (*store.Store, error) { return st, nil }, Options{Logger: quiet()})
	ctx := context.Background()
	const circuits = 200
	for i := range circuits {
		if _, err := b.Report(ctx, fmt.Sprintf("svc-%d", i), []api.Outcome{{Success: ptr(false)}}); err != nil {
			t.Fatal(err)
		}
	}
	api0.fail.Store(true)
	res, err := b.Flush(ctx)
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
