package app

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/api"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/breaker"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/cache"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/server"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dynalite"
)

// shutdownFixture is an extension's breaker, cache and local API served
// on a loopback port, over a dynalite table, as shutdown finds them.
type shutdownFixture struct {
	st  *store.Store
	log *slog.Logger
	brk *breaker.Breaker
	c   *cache.Cache
	ln  net.Listener
	srv *server.Server
}

func startShutdownFixture(t *testing.T) shutdownFixture {
	t.Helper()
	db := dynalite.Start(t)
	f := shutdownFixture{st: store.New(db.Client(), db.NewTable(t)), log: slog.New(slog.NewJSONHandler(io.Discard, nil))}
	f.c = cache.New(f.st, cache.Options{Logger: f.log})
	f.brk = breaker.New(func(context.Context) (*store.Store, error) { return f.st, nil }, f.c, breaker.Options{Logger: f.log})
	var err error
	if f.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	f.srv = server.New(server.NewHandler(f.brk, server.Options{Logger: f.log}), f.log)
	go func() { _ = f.srv.Serve(f.ln) }()
	return f
}

// A client connection that never sends a request (a pre-connected or
// pooled socket) must not hold SHUTDOWN until the server's header timeout:
// the pending outcomes still reach the table within the deadline.
func TestShutdownIdleConnectionDoesNotCostTheFlush(t *testing.T) {
	f := startShutdownFixture(t)
	st, log, brk, c, ln, srv := f.st, f.log, f.brk, f.c, f.ln, f.srv

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
	assertNothingPending(t, brk)
}

// Reports race SHUTDOWN: some over HTTP on keep-alive connections, some
// straight into the breaker as a handler that outlived the grace would.
// Every report is either acknowledged and in the table after the flush,
// or refused (503, a closed connection, ErrStopped); none is acknowledged
// and lost.
func TestReportRacingShutdownIsCountedOrRefused(t *testing.T) {
	f := startShutdownFixture(t)
	st, log, brk, c, ln, srv := f.st, f.log, f.brk, f.c, f.ln, f.srv
	url := "http://" + ln.Addr().String() + "/circuits/svc/outcomes"
	body := `{"outcomes":[{"success":false,"latencyMs":3},{"success":true,"latencyMs":3}]}`
	ok, bad := true, false

	var acked, refused atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Transport: &http.Transport{}, Timeout: 2 * time.Second}
			defer client.CloseIdleConnections()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if i%2 == 0 {
					res, err := brk.Report(context.Background(), "svc", []api.Outcome{{Success: &bad, LatencyMs: 3}, {Success: &ok, LatencyMs: 3}})
					acked.Add(int64(res.Accepted))
					if err != nil {
						refused.Add(1)
					}
					time.Sleep(time.Millisecond)
					continue
				}
				res, err := client.Post(url, "application/json", strings.NewReader(body))
				if err != nil {
					refused.Add(1)
					time.Sleep(time.Millisecond)
					continue
				}
				var a api.Accepted
				derr := json.NewDecoder(res.Body).Decode(&a)
				res.Body.Close()
				if res.StatusCode == http.StatusAccepted && derr == nil {
					acked.Add(int64(a.Accepted))
				} else {
					refused.Add(1)
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	shutdown(srv, c, brk, log, time.Now().Add(1500*time.Millisecond), "spindown")
	// Stragglers keep reporting after the flush.
	time.Sleep(50 * time.Millisecond)
	close(stop)
	wg.Wait()

	bs, err := st.GetBuckets(context.Background(), "svc", breaker.WindowStarts(time.Now(), time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	var calls int64
	for _, b := range bs {
		calls += b.Calls
	}
	if refused.Load() == 0 {
		t.Fatal("no report was refused: the test did not race SHUTDOWN")
	}
	if calls != acked.Load() {
		t.Errorf("the table holds %d calls, but %d were acknowledged (%d reports refused)", calls, acked.Load(), refused.Load())
	}
	assertNothingPending(t, brk)
}

// assertNothingPending fails t when a flush after SHUTDOWN's still finds
// outcome counts to write: the shutdown left some behind.
func assertNothingPending(t *testing.T, brk *breaker.Breaker) {
	t.Helper()
	if res, err := brk.FlushAll(context.Background()); res.Written+res.Failed+res.Dropped != 0 {
		t.Errorf("a flush after shutdown found counts to write: %+v, %v", res, err)
	}
}
