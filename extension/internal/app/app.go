// Package app runs the extension: it registers with the Extensions API,
// serves the local HTTP API from the breaker, which decides from the
// cache, and follows the lifecycle events until SHUTDOWN (with the work
// of INVOKE on a timer where no INVOKE event comes).
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/breaker"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/cache"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/config"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/extapi"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/server"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/metrics"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
)

// DefaultName is the extension's name when it cannot be taken from the
// executable's file name.
const DefaultName = "circuit-breaker"

// Timeouts of the start-up and shutdown phases.
const (
	// registerTimeout bounds the register call.
	registerTimeout = 5 * time.Second
	// prefetchTimeout bounds the initial batched read of the listed
	// circuits; past it the extension starts anyway and lookups retry.
	prefetchTimeout = 2 * time.Second
	// shutdownMargin is kept free before a SHUTDOWN deadline.
	shutdownMargin = 50 * time.Millisecond
	// serverGrace is the longest the local API's requests in flight may
	// take to finish at SHUTDOWN before their connections are closed.
	serverGrace = 200 * time.Millisecond
	// settleShare: settling probe leases at SHUTDOWN gets at most
	// 1/settleShare of the time left after the API has stopped; the rest
	// is the flush's.
	settleShare = 3
	// flushBudget bounds the work between an INVOKE and the next
	// event/next (or of one tick, where no INVOKE comes): writing due
	// outcome counts and evaluating windows. Lambda bills this time and
	// counts it against the function's timeout, so it stays small whatever
	// the table does; what does not fit waits for the next INVOKE, tick or
	// SHUTDOWN. A flush against a healthy table takes a few milliseconds.
	flushBudget = 100 * time.Millisecond
)

// Error types reported to the Extensions API.
const (
	ErrTypeConfig = "Extension.ConfigInvalid"
	ErrTypeListen = "Extension.ListenFailed"
	ErrTypeEvents = "Extension.EventsFailed"
)

// Options are the process's inputs, injectable for tests.
type Options struct {
	// Getenv reads the environment (default os.Getenv).
	Getenv func(string) string
	// Name is the registered extension name (default: NameFromArgs).
	Name string
	// Stderr receives the JSON logs (default os.Stderr).
	Stderr io.Writer
	// Stdout receives the metrics as CloudWatch Embedded Metric Format
	// lines (default os.Stdout); Lambda sends both streams to the
	// function's log group.
	Stdout io.Writer
	// NewDynamoDB builds the table client (default: EnvDynamoDB over
	// Getenv).
	NewDynamoDB func(ctx context.Context) (store.API, error)
	// OnReady, if set, is called once the API serves, with its address.
	OnReady func(addr string)
}

// NameFromArgs returns the file name of the executable (os.Args[0]), which
// is the extension's file name under /opt/extensions, or DefaultName.
func NameFromArgs(args []string) string {
	if len(args) == 0 {
		return DefaultName
	}
	name := filepath.Base(args[0])
	if name == "" || name == "." || name == "/" {
		return DefaultName
	}
	return name
}

// Run runs the extension until SHUTDOWN or until ctx ends, and returns the
// process exit code: 0 after a clean shutdown, 1 otherwise.
func Run(ctx context.Context, o Options) int {
	x, ok := setup(ctx, o.withDefaults())
	if !ok {
		return 1
	}
	return x.loop(ctx)
}

func (o Options) withDefaults() Options {
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Name == "" {
		o.Name = NameFromArgs(os.Args)
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	return o
}

// extension is the running extension: what setup wired together, which
// the event loop hands each event to.
type extension struct {
	ext    *extapi.Client
	log    *slog.Logger
	emf    *metrics.Writer
	cache  *cache.Cache
	brk    *breaker.Breaker
	srv    *server.Server
	served chan error // the local API's Serve returned
	// activity counts the requests to the local API and the INVOKE
	// events, for routine.
	activity *activity
	// tickEvery, set when no INVOKE event comes (Lambda Managed
	// Instances, or INVOKE refused), is the period of the timer that runs
	// routine instead (see startTicks); 0 with INVOKE events.
	tickEvery time.Duration
}

// setup reads the configuration, registers with the Extensions API, wires
// the cache, the breaker and the local API together, starts serving and
// prefetches the listed circuits. It reports false, having logged why and
// reported an init error where it could, when the extension cannot run.
func setup(ctx context.Context, o Options) (*extension, bool) {
	began := time.Now()
	cfg, cfgErr := config.Load(o.Getenv)
	// onRestore runs when the cache finds its memory restored from a
	// snapshot: the credentials fetched before it are dropped too.
	onRestore := func() {}
	if o.NewDynamoDB == nil {
		// No network call: missing credentials fail the init here rather
		// than every read later.
		api, creds, err := EnvDynamoDB(o.Getenv)
		cfgErr = errors.Join(cfgErr, err)
		o.NewDynamoDB = func(context.Context) (store.API, error) { return api, err }
		if creds != nil {
			onRestore = creds.Invalidate
		}
	}
	level, _ := config.ParseLogLevel(o.Getenv(config.EnvLogLevel))
	log := slog.New(slog.NewJSONHandler(o.Stderr, &slog.HandlerOptions{Level: level})).With("extension", o.Name)
	runtimeAPI := o.Getenv("AWS_LAMBDA_RUNTIME_API")
	if runtimeAPI == "" {
		log.Error("AWS_LAMBDA_RUNTIME_API is not set: not running as a Lambda extension")
		return nil, false
	}

	// Build the DynamoDB client while registering: loading the SDK
	// configuration reads files and the environment and should not delay
	// the first event/next call.
	db := newLazyStore()
	if cfgErr == nil {
		go func() {
			api, err := o.NewDynamoDB(context.WithoutCancel(ctx))
			if err != nil {
				db.set(nil, err)
				return
			}
			db.set(store.New(api, cfg.Table).WithLogger(log), nil)
		}()
	}

	ext := extapi.New(runtimeAPI)
	regCtx, cancel := context.WithTimeout(ctx, registerTimeout)
	invoke, err := register(regCtx, ext, o.Name, managedInstances(o.Getenv), log)
	cancel()
	if err != nil {
		log.Error("registration failed", "error", err.Error())
		return nil, false
	}
	if cfgErr != nil {
		log.Error("invalid configuration", "error", cfgErr.Error())
		reportInit(ctx, ext, log, ErrTypeConfig, cfgErr)
		return nil, false
	}
	if cfg.Token == "" {
		log.Warn("neither AWS_SESSION_TOKEN nor AWS_CONTAINER_AUTHORIZATION_TOKEN is set: the X-Circuit-Breaker-Token check is disabled (local run)")
	}

	emf := metrics.NewWriter(o.Stdout, cfg.Table)
	x := wire(cfg, db, log, emf, onRestore)
	x.ext, x.emf = ext, emf
	events := "INVOKE,SHUTDOWN"
	if !invoke {
		events = "SHUTDOWN"
		x.tickEvery = tickInterval(cfg.RefreshInterval)
	}
	ln, err := server.Listen(cfg.Port)
	if err != nil {
		err = fmt.Errorf("listen on 127.0.0.1:%d: %w", cfg.Port, err)
		log.Error("cannot serve the local API", "error", err.Error())
		reportInit(ctx, ext, log, ErrTypeListen, err)
		return nil, false
	}
	go func() { x.served <- x.srv.Serve(ln) }()

	if len(cfg.Services) > 0 {
		pctx, cancel := context.WithTimeout(ctx, prefetchTimeout)
		if err := x.cache.Prefetch(pctx, cfg.Services); err != nil {
			log.Warn("prefetch failed; lookups will retry", "circuits", len(cfg.Services), "error", err.Error())
		}
		cancel()
	}
	log.Info("ready", "addr", ln.Addr().String(), "circuits", x.cache.Len(), "startMs", float64(time.Since(began).Microseconds())/1000,
		"refreshInterval", cfg.RefreshInterval.String(), "maxAge", cfg.MaxAge.String(), "failMode", string(cfg.FailMode),
		"events", events, "initType", o.Getenv(EnvInitType))
	if o.OnReady != nil {
		o.OnReady(ln.Addr().String())
	}
	return x, true
}

// wire builds the cache reading through db, the breaker deciding from it
// and the local API's server answering with the breaker, from cfg; the
// server counts rejected tokens in emf. The cache calls onRestore when it
// finds its memory restored from a snapshot, before the reads that follow.
func wire(cfg config.Config, db *lazyStore, log *slog.Logger, emf *metrics.Writer, onRestore func()) *extension {
	c := cache.New(db, cacheOptions(cfg, log, onRestore))
	// One knob bounds every wait of a lookup on the table: the first read
	// of an uncached circuit, and the writes that end a cool-down or claim
	// a probe lease.
	brk := breaker.New(db.get, c, breaker.Options{
		Policies:     cfg.Policies,
		FailAllow:    cfg.FailMode.Allows(),
		ClaimTimeout: cfg.MissTimeout,
		MaxCircuits:  cfg.MaxCircuits,
		Logger:       log,
	})
	act := newActivity(time.Now)
	requests := &requestCounter{next: server.NewHandler(brk, server.Options{Token: cfg.Token, Logger: log, Metrics: emf, Services: cfg.Services}), activity: act}
	srv := server.New(requests, log)
	return &extension{log: log, cache: c, brk: brk, srv: srv, served: make(chan error, 1), activity: act}
}

// cacheOptions are the cache's options from cfg, on the process's clocks.
func cacheOptions(cfg config.Config, log *slog.Logger, onRestore func()) cache.Options {
	return cache.Options{
		RefreshInterval: cfg.RefreshInterval,
		MaxStaleness:    cfg.MaxStaleness,
		MaxAge:          cfg.MaxAge,
		MissTimeout:     cfg.MissTimeout,
		MaxCircuits:     cfg.MaxCircuits,
		OnRestore:       onRestore,
		Logger:          log,
	}
}

// loop follows the lifecycle events until SHUTDOWN, or until ctx ends,
// handing each to its handler, and returns the exit code.
func (x *extension) loop(ctx context.Context) int {
	stopTicks := x.startTicks(ctx)
	defer stopTicks()
	for {
		ev, err := x.ext.Next(ctx)
		if err != nil {
			stopTicks()
			return x.onNextFailed(ctx, err)
		}
		select {
		case err := <-x.served:
			x.log.Error("local API stopped", "error", err.Error())
			return 1
		default:
		}
		switch ev.EventType {
		case extapi.Invoke:
			x.onInvoke(ctx, ev)
		case extapi.Shutdown:
			stopTicks() // the shutdown's flush is the last
			x.onShutdown(ev)
			return 0
		default:
			x.log.Warn("ignoring unknown event", "eventType", string(ev.EventType))
		}
	}
}

// onInvoke handles an INVOKE event: the function runs now, and the
// sandbox may be frozen right after the next event/next.
func (x *extension) onInvoke(ctx context.Context, ev extapi.Event) {
	x.log.Debug("invoke", "requestId", ev.RequestID)
	x.activity.mark()
	x.routine(ctx)
}

// routine is the work due whenever the sandbox runs: what an INVOKE
// starts, and what a timer's tick does where no INVOKE comes (onTick). It
// starts the reads that are due, first, so they are under way, or done,
// when the function's first lookup arrives (the runtime got the event at
// the same moment); it writes the metrics of the lookups and reports since
// the last call; then it flushes the outcome counts that are due, within
// flushBudget, and returns: the sandbox may be frozen right after.
//
// What an idle sandbox does not need is skipped (see activity): the
// metrics when nothing happened since the last call, and the reads once
// nothing has happened for warmFor. An INVOKE is activity, so after one
// nothing is skipped.
func (x *extension) routine(ctx context.Context) {
	busy, warm := x.activity.since()
	if warm {
		x.cache.RefreshDue()
	}
	if busy {
		// Lookups and rejected outcomes are counted only by requests.
		emitLookupMetrics(x.brk, x.emf, x.log)
		emitRejected(x.brk, x.emf, x.log)
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushBudget)
	defer cancel()
	began := time.Now()
	res, err := x.brk.Flush(fctx)
	logFlush(x.log, began, res, err)
}

// onShutdown handles the SHUTDOWN event: everything ends before its
// deadline (see shutdown).
func (x *extension) onShutdown(ev extapi.Event) {
	deadline := ev.Deadline()
	if deadline.IsZero() {
		deadline = time.Now().Add(time.Second)
	}
	x.log.Info("shutdown", "reason", ev.ShutdownReason, "deadlineInMs", time.Until(deadline).Milliseconds())
	shutdown(x.srv, x.cache, x.brk, x.log, deadline, ev.ShutdownReason)
	emitLookupMetrics(x.brk, x.emf, x.log)
	emitRejected(x.brk, x.emf, x.log)
}

// onNextFailed handles the end of the event stream: ctx ended (a local
// run), or event/next failed, which is reported as an exit error. Either
// way the extension shuts down within a second, and returns the exit code.
func (x *extension) onNextFailed(ctx context.Context, err error) int {
	if ctx.Err() != nil {
		x.log.Info("stopping", "reason", context.Cause(ctx).Error())
		shutdown(x.srv, x.cache, x.brk, x.log, time.Now().Add(time.Second), "")
		return 0
	}
	x.log.Error("event/next failed", "error", err.Error())
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	if rerr := x.ext.ExitError(ectx, ErrTypeEvents, err); rerr != nil {
		x.log.Error("reporting exit error failed", "error", rerr.Error())
	}
	cancel()
	shutdown(x.srv, x.cache, x.brk, x.log, time.Now().Add(time.Second), "")
	return 1
}

// logFlush logs what a flush started at began did, when it did anything.
func logFlush(log *slog.Logger, began time.Time, res breaker.FlushResult, err error) {
	if res == (breaker.FlushResult{}) && err == nil {
		return
	}
	attrs := []any{"buckets", res.Written, "failed", res.Failed, "dropped", res.Dropped, "evaluated", res.Evaluated, "skipped", res.Skipped, "tripped", res.Tripped, "durationMs", time.Since(began).Milliseconds()}
	if err != nil {
		log.Warn("flushing outcomes failed or ran out of time; failed counts are kept for the next flush", append(attrs, "error", err.Error())...)
		return
	}
	log.Debug("flushed outcomes", attrs...)
}

// emitRejected logs and counts the outcomes rejected since the last call
// because memory held the counts of the most circuits it keeps.
func emitRejected(brk *breaker.Breaker, w *metrics.Writer, log *slog.Logger) {
	n := brk.TakeRejected()
	if n == 0 {
		return
	}
	log.Warn("outcomes refused: memory holds the counts of the most circuits it keeps; the callers got 503", "calls", n)
	if err := w.Emit(metrics.AllServices, []metrics.Value{{Name: metrics.OutcomesRefused, Unit: metrics.Count, Value: float64(n)}}, nil); err != nil {
		log.Warn("metrics not written", "error", err.Error())
	}
}

// emitLookupMetrics writes one EMF line per circuit looked up since the
// last call: cache hits, misses, waits for a fresh value, stale answers
// and denied calls, and the state of the last answer (CircuitState,
// CircuitOpen), so an OPEN alarm fires from the fleet's traffic without
// waiting for the next health check. It runs on INVOKE, on a tick that
// followed requests (where no INVOKE comes) and at SHUTDOWN, when the
// sandbox is not frozen.
func emitLookupMetrics(brk *breaker.Breaker, w *metrics.Writer, log *slog.Logger) {
	stats := brk.TakeLookupStats()
	ids := make([]string, 0, len(stats))
	for id, s := range stats {
		if !s.IsZero() {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	for _, id := range ids {
		s := stats[id]
		open := 0.0
		if s.State == circuit.Open {
			open = 1
		}
		err := w.Emit(id, []metrics.Value{
			{Name: metrics.CircuitState, Unit: metrics.None, Value: metrics.StateValue(string(s.State))},
			{Name: metrics.CircuitOpen, Unit: metrics.None, Value: open},
			{Name: metrics.CacheHits, Unit: metrics.Count, Value: float64(s.Hits)},
			{Name: metrics.CacheMisses, Unit: metrics.Count, Value: float64(s.Misses)},
			{Name: metrics.CacheWaits, Unit: metrics.Count, Value: float64(s.Waits)},
			{Name: metrics.StaleAnswers, Unit: metrics.Count, Value: float64(s.Stale)},
			{Name: metrics.CallsRefused, Unit: metrics.Count, Value: float64(s.Denied)},
		}, nil)
		if err != nil {
			log.Warn("metrics not written", "error", err.Error())
			return
		}
	}
}

// shutdown ends the extension in order, until shortly before deadline:
//
//  1. the local API stops accepting connections and answers 503 to
//     requests that still arrive;
//  2. the handlers in flight get serverGrace (a quarter of the budget when
//     that is shorter) to finish; then their connections are closed, which
//     cancels their requests, and they get as long again to return, so
//     that no handler runs after the flush;
//  3. the breaker stops: a handler that still outlives that wait has its
//     outcomes rejected, not dropped after the flush, and claims no lease;
//  4. held probe leases are settled side by side, within a third of the
//     remaining time, so that a slow table cannot use up the flush's;
//  5. pending outcomes are flushed, and pending reads waited for.
//
// reason is the SHUTDOWN event's: after "timeout" or "failure" a probe
// call may have hung, so held leases count as failed probes; after
// "spindown" (or in a local run, "") they are released.
func shutdown(srv *server.Server, c *cache.Cache, brk *breaker.Breaker, log *slog.Logger, deadline time.Time, reason string) {
	ctx, cancel := context.WithDeadline(context.Background(), deadline.Add(-shutdownMargin))
	defer cancel()
	grace := min(serverGrace, time.Until(deadline)/4)
	sctx, scancel := context.WithTimeout(ctx, grace)
	err := srv.Shutdown(sctx)
	scancel()
	handlersDone := err == nil
	if !handlersDone {
		log.Warn("requests still open after the shutdown grace; closing them", "graceMs", grace.Milliseconds(), "error", err.Error())
		_ = srv.Close()
		wctx, wcancel := context.WithTimeout(ctx, grace)
		handlersDone = srv.Wait(wctx) == nil
		wcancel()
		if !handlersDone {
			log.Warn("request handlers still running after the shutdown grace; their outcomes are refused")
		}
	}
	brk.Stop()
	ectx, ecancel := context.WithTimeout(ctx, time.Until(deadline.Add(-shutdownMargin))/settleShare)
	if n := brk.EndProbes(ectx, reason); n > 0 {
		log.Info("probe leases settled at shutdown", "leases", n, "countedAsFailed", breaker.ProbesFailed(reason), "reason", reason)
	}
	ecancel()
	began := time.Now()
	res, err := brk.FlushAll(ctx)
	logFlush(log, began, res, err)
	if !handlersDone {
		// A handler may still start a read; waiting for reads now could
		// race it.
		log.Info("stopped")
		return
	}
	if err := c.Wait(ctx); err != nil {
		log.Warn("pending reads did not finish before the deadline", "error", err.Error())
	}
	log.Info("stopped")
}

func reportInit(ctx context.Context, ext *extapi.Client, log *slog.Logger, errType string, cause error) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	if err := ext.InitError(rctx, errType, cause); err != nil {
		log.Error("reporting init error failed", "error", err.Error())
	}
}
