package app

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/api"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/breaker"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/cache"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/server"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dynalite"
)

// A client connection that never sends a request (a pre-connected or
// pooled socket) must not hold SHUTDOWN until the server's header timeout:
// the pending outcomes still reach the table within the deadline.
func TestShutdownIdleConnectionDoesNotCostTheFlush(t *testing.T) {
	db := dynalite.Start(t)
	st := store.New(db.Client(), db.NewTable(t))
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	brk := breaker.New(func(context.Context) (*store.Store, error) { return st, nil }, breaker.Options{Logger: log})
	c := cache.New(st, cache.Options{Admitter: brk, Logger: log})
	brk.SetCache(c)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(server.NewHandler(c, server.Options{Reporter: brk, Logger: log}), log)
	go func() { _ = srv.Serve(ln) }()

	failed := false
	if _, err := brk.Report(context.Background(), "svc", []api.Outcome{{Success: &failed, LatencyMs: 5}}); err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	time.Sleep(50 * time.Millisecond)

	budget := 1500 * time.Millisecond
	start := time.Now()
	shutdown(srv, c, brk, log, start.Add(budget), "spindown")
	took := time.Since(start)
	if took > budget-shutdownMargin {
		t.Errorf("shutdown took %s, past its %s budget", took, budget)
	}
	if brk.Pending() != 0 {
		t.Errorf("%d outcome buckets still pending after shutdown", brk.Pending())
	}
	bs, err := st.GetBuckets(context.Background(), "svc", breaker.WindowStarts(time.Now(), 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var calls int64
	for _, b := range bs {
		calls += b.Calls
	}
	if calls != 1 {
		t.Errorf("the table holds %d calls, want the 1 reported before SHUTDOWN", calls)
	}
}
