package updater

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/healthcheck"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/metrics"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
)

// Prober runs one health check; *healthcheck.Checker is the real one.
type Prober interface {
	Check(ctx context.Context, p healthcheck.Probe) healthcheck.Result
}

// Updater checks one service per call, confirming failures and checking
// again every CheckInterval when asked to, and applies each result to its
// circuit.
type Updater struct {
	// Store persists the circuits.
	Store *store.Store
	// Prober runs the health checks.
	Prober Prober
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Sleep waits between checks, on the same clock as Now, and returns
	// ctx's error when ctx ends first; nil means a timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// Logger receives one line per check; nil means slog.Default().
	Logger *slog.Logger
	// Metrics receives one EMF record per check; nil emits none.
	Metrics *metrics.Writer
}

// New returns an Updater over store s with the real HTTP prober.
func New(s *store.Store, logger *slog.Logger) *Updater {
	return &Updater{Store: s, Prober: healthcheck.NewChecker(nil), Logger: logger}
}

// Output is the function's result for one invocation: the circuit after
// its last check, what the checks changed, and the last check.
type Output struct {
	// ID is the service ID.
	ID string `json:"id"`
	// State is the circuit's stored state after the check.
	State circuit.State `json:"state"`
	// EffectiveState is the state callers act on, an override applied.
	EffectiveState circuit.State `json:"effectiveState"`
	// Override is the override in force, if any.
	Override circuit.Override `json:"override,omitempty"`
	// Version is the circuit's version after the check.
	Version int64 `json:"version"`
	// Transitioned reports whether a check of the invocation moved the
	// circuit.
	Transitioned bool `json:"transitioned"`
	// Transitions is how many checks of the invocation moved the circuit.
	Transitions int `json:"transitions"`
	// From is the state the first transition left, when Transitioned.
	From circuit.State `json:"from,omitempty"`
	// Change is the most the checks wrote: none, counters or transition.
	Change string `json:"change"`
	// Checks is how many checks the invocation ran, confirmations
	// included.
	Checks int `json:"checks"`
	// Confirmations is how many of the checks confirmed a failure.
	Confirmations int `json:"confirmations"`
	// Reads and Writes are the DynamoDB calls of the checks' updates.
	Reads  int `json:"reads"`
	Writes int `json:"writes"`
	// Check is the last health check's outcome.
	Check CheckOutput `json:"check"`

	change circuit.Change
}

// CheckOutput is the outcome of the health check in Output.
type CheckOutput struct {
	// OK reports whether the check succeeded.
	OK bool `json:"ok"`
	// Outcome is ok, timeout, connection, tls, redirects, refused, status
	// or slow.
	Outcome healthcheck.Outcome `json:"outcome"`
	// Status is the HTTP status, 0 when no response arrived.
	Status int `json:"status,omitempty"`
	// LatencyMs is the check's latency in milliseconds.
	LatencyMs int64 `json:"latencyMs"`
	// Detail explains the outcome.
	Detail string `json:"detail"`
}

// Handle is the Lambda handler: it parses the rule's input and runs one
// invocation's checks. Bad input returns an error before anything is
// probed or written.
func (u *Updater) Handle(ctx context.Context, input json.RawMessage) (Output, error) {
	cfg, err := ParseInput(input)
	if err != nil {
		return Output{}, err
	}
	return u.Run(ctx, cfg)
}

// Run checks the service of cfg and applies each result to its circuit
// through store.Apply:
//
//   - one regular check;
//   - when a check fails and leaves the circuit CLOSED, up to
//     FailureThreshold-1 confirmation checks, ConfirmInterval apart, that
//     stop at the first success or when the circuit opens;
//   - with CheckInterval, a regular check every interval from the start,
//     for up to RunWindow, skipping the ticks of a cool-down.
//
// No check starts unless it and its write can end within RunWindow and
// before ctx's deadline less WriteAllowance; only the first check may be
// cut shorter than Timeout to fit. A failed check is not an error; an
// error means a circuit could not be updated or ctx ended (nothing was
// written for the check in progress; earlier checks stay written).
func (u *Updater) Run(ctx context.Context, cfg Config) (Output, error) {
	r := u.newRun(ctx, cfg)
	timeout := min(cfg.Probe.Timeout, r.end.Sub(r.start)-WriteAllowance)
	if timeout < MinCheckBudget {
		return Output{}, fmt.Errorf("updater: check of %q not started: %s left before the function's deadline, less than %s for a check and %s for its write",
			cfg.ID, r.end.Sub(r.start).Round(time.Millisecond), MinCheckBudget, WriteAllowance)
	}
	last, err := r.check(ctx, timeout)
	if err != nil {
		return Output{}, err
	}
	if last, err = r.confirm(ctx, last); err != nil {
		return Output{}, err
	}
	if cfg.CheckInterval > 0 {
		if err := r.every(ctx, last); err != nil {
			return Output{}, err
		}
	}
	u.logger().LogAttrs(ctx, slog.LevelInfo, "run",
		slog.String("service", cfg.ID),
		slog.Int("checks", r.out.Checks),
		slog.Int("confirmations", r.out.Confirmations),
		slog.String("state", string(r.out.State)),
		slog.String("change", r.out.Change),
		slog.Int("reads", r.out.Reads),
		slog.Int("writes", r.out.Writes),
		slog.Int64("tookMs", u.now().Sub(r.start).Milliseconds()),
	)
	return r.out, nil
}

// run is one invocation's sequence of checks.
type run struct {
	u     *Updater
	cfg   Config
	start time.Time // on the updater's clock
	end   time.Time // on the updater's clock: every check and write ends by then
	out   Output
	tick  int // index of the next regular check; the first one is 0
}

// newRun fixes the invocation's end: RunWindow from now, or ctx's
// deadline when that comes first. The deadline is read once on the wall
// clock and carried over to the updater's clock.
func (u *Updater) newRun(ctx context.Context, cfg Config) *run {
	r := &run{u: u, cfg: cfg, start: u.now(), tick: 1}
	budget := RunWindow
	if dl, ok := ctx.Deadline(); ok {
		budget = min(budget, time.Until(dl))
	}
	r.end = r.start.Add(budget)
	return r
}

// fits reports whether a full check starting at t, and its write, end by
// the run's end.
func (r *run) fits(t time.Time) bool {
	return !t.Add(r.cfg.Probe.Timeout + WriteAllowance).After(r.end)
}

// confirm runs the confirmation checks after last: while the last check
// failed and left the circuit CLOSED with failures counted, up to
// FailureThreshold-1 of them, ConfirmInterval apart.
func (r *run) confirm(ctx context.Context, last store.Applied) (store.Applied, error) {
	for i := 1; i < r.cfg.Settings.FailureThreshold && r.cfg.ConfirmInterval > 0; i++ {
		after := last.After()
		if r.out.Check.OK || after.State != circuit.Closed || after.ConsecutiveFailures == 0 {
			return last, nil
		}
		at := r.u.now().Add(r.cfg.ConfirmInterval)
		if !r.fits(at) {
			return last, nil
		}
		if err := r.u.sleep(ctx, r.cfg.ConfirmInterval); err != nil {
			return last, fmt.Errorf("updater: confirmation of %q interrupted: %w", r.cfg.ID, err)
		}
		var err error
		if last, err = r.check(ctx, r.cfg.Probe.Timeout); err != nil {
			return last, err
		}
		r.out.Confirmations++
	}
	return last, nil
}

// every runs the regular checks of CheckInterval after the first: at
// start + k × CheckInterval, skipping ticks already past and the ticks
// before an OPEN circuit's RetryAt, as long as a check fits.
func (r *run) every(ctx context.Context, last store.Applied) error {
	for {
		now := r.u.now()
		after := last.After()
		next := r.start.Add(time.Duration(r.tick) * r.cfg.CheckInterval)
		for !next.After(r.end) && next.Before(now) {
			r.tick++
			next = r.start.Add(time.Duration(r.tick) * r.cfg.CheckInterval)
		}
		// An OPEN circuit's trial comes when its cool-down ends, not at
		// the first tick after it: the check that opened it took time, so
		// the cool-down rarely ends on a tick. That check takes no tick;
		// the ticks after it run as scheduled.
		onTick := true
		if after.State == circuit.Open && next.Before(after.RetryAt) {
			next, onTick = after.RetryAt, false
		}
		if !r.fits(next) {
			return nil
		}
		if err := r.u.sleep(ctx, next.Sub(now)); err != nil {
			return fmt.Errorf("updater: interval check of %q interrupted: %w", r.cfg.ID, err)
		}
		if onTick {
			r.tick++
		} else {
			for !r.start.Add(time.Duration(r.tick) * r.cfg.CheckInterval).After(next) {
				r.tick++ // ticks inside the cool-down, and one on RetryAt itself
			}
		}
		var err error
		if last, err = r.check(ctx, r.cfg.Probe.Timeout); err != nil {
			return err
		}
		if last, err = r.confirm(ctx, last); err != nil {
			return err
		}
	}
}

// check runs one check with the given timeout, applies its result and
// adds it to the run's output.
func (r *run) check(ctx context.Context, timeout time.Duration) (store.Applied, error) {
	cfg, u := r.cfg, r.u
	probe := cfg.Probe
	cut := timeout < probe.Timeout
	if cut {
		probe.Timeout = timeout
		probe.SlowCallThreshold = min(probe.SlowCallThreshold, timeout)
	}
	res := u.Prober.Check(ctx, probe)
	if err := ctx.Err(); err != nil {
		return store.Applied{}, fmt.Errorf("updater: check of %q interrupted: %w", cfg.ID, err)
	}
	if cut && res.Outcome == healthcheck.Timeout {
		res.Detail += fmt.Sprintf(" (Timeout %s cut to fit the function's deadline)", cfg.Probe.Timeout)
	}
	// The circuit's reason is readable by attached functions and events:
	// it gets the result's fixed-class Reason, never error text.
	result := circuit.CheckResult{OK: res.OK(), Reason: res.Reason()}
	applied, err := u.Store.Apply(ctx, cfg.ID, func(cur circuit.Circuit) circuit.Decision {
		return circuit.Decide(cur, cfg.Settings, result, u.now())
	})
	if err != nil {
		return store.Applied{}, fmt.Errorf("updater: apply check of %q: %w", cfg.ID, err)
	}
	after := applied.After()
	now := u.now()
	if !applied.OverrideStored {
		// The first check of a circuit after an upgrade moves its
		// override into the circuit item (from the override item or the
		// legacy attributes), or creates the override attribute without
		// one: from then on readers read one item. A failure here leaves
		// that to the next check.
		if _, err := u.Store.MigrateOverride(ctx, cfg.ID, now); err != nil {
			u.logger().WarnContext(ctx, "override not migrated", slog.String("service", cfg.ID), slog.String("error", err.Error()))
		}
	}
	// Every check brings the read copies in step with the circuit item,
	// creating, repairing or retiring them (each repair logged). A failure
	// leaves that to the next check.
	if sync, err := u.Store.SyncCopies(ctx, cfg.ID, cfg.ReadCopies, applied.ReadCopies); err != nil {
		u.logger().WarnContext(ctx, "read copies not synced", slog.String("service", cfg.ID), slog.String("error", err.Error()))
	} else {
		r.out.Reads += sync.Reads
		r.out.Writes += sync.Writes
	}
	out := &r.out
	out.ID = cfg.ID
	out.State = after.State
	out.EffectiveState = after.EffectiveState(now)
	out.Override = after.ActiveOverride(now)
	out.Version = after.Version
	if applied.Decision.Transitioned() {
		if !out.Transitioned {
			out.From = applied.Before.State
		}
		out.Transitioned = true
		out.Transitions++
	}
	if out.Checks == 0 || applied.Decision.Change > out.change {
		out.change = applied.Decision.Change
		out.Change = applied.Decision.Change.String()
	}
	out.Checks++
	out.Reads += applied.Reads
	out.Writes += applied.Writes
	out.Check = CheckOutput{
		OK:        res.OK(),
		Outcome:   res.Outcome,
		Status:    res.StatusCode,
		LatencyMs: res.Latency.Milliseconds(),
		Detail:    res.Detail,
	}
	attrs := []slog.Attr{
		slog.String("service", cfg.ID),
		slog.String("outcome", string(res.Outcome)),
		slog.Int("status", res.StatusCode),
		slog.Int64("latencyMs", out.Check.LatencyMs),
		slog.String("state", string(after.State)),
		slog.String("change", applied.Decision.Change.String()),
		slog.Int("reads", applied.Reads),
		slog.Int("writes", applied.Writes),
	}
	if applied.Rewritten != nil {
		// The circuit item could not be decoded (an attached function
		// may write it): the check's write replaced it.
		attrs = append(attrs, slog.String("rewritten", applied.Rewritten.Error()))
	}
	u.logger().LogAttrs(ctx, slog.LevelInfo, "check", attrs...)
	u.emit(ctx, Output{ID: cfg.ID, State: after.State, EffectiveState: out.EffectiveState, Version: after.Version,
		Transitioned: applied.Decision.Transitioned(), Check: out.Check})
	return applied, nil
}

// emit writes the check's metrics: failure, latency, effective state,
// whether the circuit is open, and a transition count.
func (u *Updater) emit(ctx context.Context, out Output) {
	if u.Metrics == nil {
		return
	}
	failed, open, transitions := 0.0, 0.0, 0.0
	if !out.Check.OK {
		failed = 1
	}
	if out.EffectiveState == circuit.Open {
		open = 1
	}
	if out.Transitioned {
		transitions = 1
	}
	err := u.Metrics.Emit(out.ID, []metrics.Value{
		{Name: metrics.HealthCheckFailed, Unit: metrics.Count, Value: failed},
		{Name: metrics.HealthCheckLatency, Unit: metrics.Milliseconds, Value: float64(out.Check.LatencyMs)},
		{Name: metrics.CircuitState, Unit: metrics.None, Value: metrics.StateValue(string(out.EffectiveState))},
		{Name: metrics.CircuitOpen, Unit: metrics.None, Value: open},
		{Name: metrics.Transitions, Unit: metrics.Count, Value: transitions},
	}, map[string]any{"outcome": string(out.Check.Outcome), "state": string(out.State), "version": out.Version})
	if err != nil {
		u.logger().WarnContext(ctx, "metrics not written", slog.String("error", err.Error()))
	}
}

// sleep waits d on the updater's clock, or until ctx ends.
func (u *Updater) sleep(ctx context.Context, d time.Duration) error {
	if u.Sleep != nil {
		return u.Sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (u *Updater) now() time.Time {
	if u.Now != nil {
		return u.Now()
	}
	return time.Now()
}

func (u *Updater) logger() *slog.Logger {
	if u.Logger != nil {
		return u.Logger
	}
	return slog.Default()
}
