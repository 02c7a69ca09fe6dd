package fleetsim

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"math/rand/v2"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/api"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/breaker"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/cache"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/policy"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
)

// The extension's production options (see extension/internal/config).
const (
	refreshInterval = time.Second
	maxAge          = 2 * time.Second
	missTimeout     = 100 * time.Millisecond
	fetchTimeout    = 2 * time.Second
	maxStaleness    = 30 * time.Second
)

// env is one execution environment: the extension's breaker and cache on
// its own clock, and what the simulation follows of it.
type env struct {
	b   *breaker.Breaker
	c   *cache.Cache
	now atomic.Int64 // Unix nanoseconds

	rng      *rand.Rand
	next     time.Time // next invocation
	lastBusy int64     // last second with a call
	// firstFail, firstRefusal and refusingAll are offsets into the first
	// failing phase: its first failed call, its first refused call, and
	// the first moment its breaker refused every call (Refusing);
	// refusedAfterTrip is the first refusal after the fleet trip (-1:
	// none yet).
	firstFail, firstRefusal, refusingAll, refusedAfterTrip time.Duration
	// pending holds probe outcomes to report later (Config.ProbeLatency),
	// in time order.
	pending []pendingReport
}

// pendingReport is a probe call's outcome, reported at its time.
type pendingReport struct {
	at      time.Time
	ok      bool
	latency time.Duration
	probe   string
}

func newEnv(st *store.Store, pols policy.Policies, log *slog.Logger, holder string, copyPick int) *env {
	e := &env{firstFail: -1, firstRefusal: -1, refusingAll: -1, refusedAfterTrip: -1}
	clock := func() time.Time { return time.Unix(0, e.now.Load()) }
	stf := func(context.Context) (*store.Store, error) { return st, nil }
	// Each environment reads its own read copy, as each extension picks one.
	e.c = cache.New(st.WithReadCopy(copyPick).WithEventualReads(), cache.Options{ // as the extension wires it
		RefreshInterval: refreshInterval, MaxAge: maxAge, MissTimeout: missTimeout, FetchTimeout: fetchTimeout,
		MaxStaleness: maxStaleness, Now: clock, Logger: log,
	})
	e.b = breaker.New(stf, e.c, breaker.Options{Policies: pols, FailAllow: true, Now: clock, Logger: log, Holder: holder})
	return e
}

func (e *env) refreshDue() { e.c.RefreshDue() }

func (e *env) lookup(ctx context.Context, id string) (allowed bool, probe string) {
	a := e.b.Lookup(ctx, id)
	return a.Allowed, a.Probe
}

func (e *env) report(ctx context.Context, id string, ok bool, latency time.Duration, probe string) error {
	_, err := e.b.Report(ctx, id, []api.Outcome{{Success: &ok, LatencyMs: latency.Milliseconds(), ProbeToken: probe}})
	return err
}

// flush is the INVOKE's flush. ctx carries the flush's budget; the table
// answers at once in simulated time, so the budget never binds here.
func (e *env) flush(ctx context.Context) {
	_, _ = e.b.Flush(ctx) // failures are retried by the next flush, and counted by the table
}

func (e *env) close() { _ = e.c.Wait(context.Background()) }
