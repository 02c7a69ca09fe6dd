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

// Updater checks one service per call and applies the result to its
// circuit.
type Updater struct {
	// Store persists the circuits.
	Store *store.Store
	// Prober runs the health checks.
	Prober Prober
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Logger receives one line per check; nil means slog.Default().
	Logger *slog.Logger
	// Metrics receives one EMF record per check; nil emits none.
	Metrics *metrics.Writer
}

// New returns an Updater over store s with the real HTTP prober.
func New(s *store.Store, logger *slog.Logger) *Updater {
	return &Updater{Store: s, Prober: healthcheck.NewChecker(nil), Logger: logger}
}

// Output is the function's result for one check.
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
	// Transitioned reports whether this check moved the circuit.
	Transitioned bool `json:"transitioned"`
	// From is the state the transition left, when Transitioned.
	From circuit.State `json:"from,omitempty"`
	// Change is what the check wrote: none, counters or transition.
	Change string `json:"change"`
	// Check is the health check's outcome.
	Check CheckOutput `json:"check"`
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
// check. Bad input returns an error before anything is probed or written.
func (u *Updater) Handle(ctx context.Context, input json.RawMessage) (Output, error) {
	cfg, err := ParseInput(input)
	if err != nil {
		return Output{}, err
	}
	return u.Run(ctx, cfg)
}

// Run checks the service of cfg and applies the result to its circuit. A
// failed check is not an error; an error means the circuit could not be
// updated (or ctx ended), and nothing was written for this check.
func (u *Updater) Run(ctx context.Context, cfg Config) (Output, error) {
	res := u.Prober.Check(ctx, cfg.Probe)
	if err := ctx.Err(); err != nil {
		return Output{}, fmt.Errorf("updater: check of %q interrupted: %w", cfg.ID, err)
	}
	// The circuit's reason is readable by attached functions and events:
	// it gets the result's fixed-class Reason, never error text.
	result := circuit.CheckResult{OK: res.OK(), Reason: res.Reason()}
	applied, err := u.Store.Apply(ctx, cfg.ID, func(cur circuit.Circuit) circuit.Decision {
		return circuit.Decide(cur, cfg.Settings, result, u.now())
	})
	if err != nil {
		return Output{}, fmt.Errorf("updater: apply check of %q: %w", cfg.ID, err)
	}
	after := applied.After()
	now := u.now()
	if !applied.OverrideStored {
		// The first check of a circuit creates its override item, moving
		// a legacy override there: from then on the circuit item's
		// override attributes, which attached functions can write, are
		// ignored. A failure here leaves that to the next check.
		if _, err := u.Store.MigrateOverride(ctx, after, now); err != nil {
			u.logger().WarnContext(ctx, "override item not created", slog.String("service", cfg.ID), slog.String("error", err.Error()))
		}
	}
	out := Output{
		ID:             cfg.ID,
		State:          after.State,
		EffectiveState: after.EffectiveState(now),
		Override:       after.ActiveOverride(now),
		Version:        after.Version,
		Transitioned:   applied.Decision.Transitioned(),
		Change:         applied.Decision.Change.String(),
		Check: CheckOutput{
			OK:        res.OK(),
			Outcome:   res.Outcome,
			Status:    res.StatusCode,
			LatencyMs: res.Latency.Milliseconds(),
			Detail:    res.Detail,
		},
	}
	if out.Transitioned {
		out.From = applied.Before.State
	}
	u.logger().LogAttrs(ctx, slog.LevelInfo, "check",
		slog.String("service", cfg.ID),
		slog.String("outcome", string(res.Outcome)),
		slog.Int("status", res.StatusCode),
		slog.Int64("latencyMs", out.Check.LatencyMs),
		slog.String("state", string(out.State)),
		slog.String("change", out.Change),
		slog.Int("reads", applied.Reads),
		slog.Int("writes", applied.Writes),
	)
	u.emit(ctx, out)
	return out, nil
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
