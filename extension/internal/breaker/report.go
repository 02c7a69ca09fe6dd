package breaker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/api"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
)

// probeApplyTimeout bounds applying one probe outcome and releasing its
// lease, while the reporting caller waits.
const probeApplyTimeout = time.Second

// Report takes validated outcomes of circuit id. Outcomes are counted in
// memory, to be flushed on the next INVOKE or at SHUTDOWN. An outcome
// carrying the token of a lease this extension handed out is a probe
// outcome instead: it is applied to the HALF_OPEN circuit at once (close
// after SuccessThreshold successes, reopen on a failure) and the lease is
// released; the answer then holds the circuit's state. A probe token that
// is unknown or expired is counted as an ordinary outcome.
func (b *Breaker) Report(ctx context.Context, id string, outs []api.Outcome) (api.Accepted, error) {
	now := b.o.Now()
	pol := b.o.Policies.For(id)
	slow := pol.Rates().SlowCallDuration
	var counts circuit.Counts
	var res api.Accepted
	var errs []error
	for _, o := range outs {
		ok := o.Success != nil && *o.Success
		latency := time.Duration(o.LatencyMs) * time.Millisecond
		if o.ProbeToken != "" {
			if l, held := b.takeLease(id, o.ProbeToken); held {
				pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), probeApplyTimeout)
				after, err := b.applyProbe(pctx, l, probeResult(ok, latency))
				cancel()
				if err != nil {
					errs = append(errs, err)
				} else {
					res.State = string(after.State)
				}
				res.Accepted++
				continue
			}
		}
		counts.Calls++
		if !ok {
			counts.Failures++
		}
		if latency >= slow {
			counts.Slow++
		}
		res.Accepted++
	}
	if counts.Calls > 0 {
		b.agg.Record(id, now, counts)
	}
	return res, errors.Join(errs...)
}

// probeResult describes a reported probe call as a check result.
func probeResult(ok bool, latency time.Duration) circuit.CheckResult {
	if ok {
		return circuit.CheckResult{OK: true, Reason: fmt.Sprintf("probe call succeeded in %d ms", latency.Milliseconds())}
	}
	return circuit.CheckResult{Reason: fmt.Sprintf("probe call failed after %d ms", latency.Milliseconds())}
}

// applyProbe applies the probe outcome result of lease l to its circuit
// (DecideProbe: only while the circuit is still HALF_OPEN at the lease's
// version) and releases the lease, within ctx.
func (b *Breaker) applyProbe(ctx context.Context, l store.Lease, result circuit.CheckResult) (circuit.Circuit, error) {
	st, err := b.store(ctx)
	if err != nil {
		return circuit.Circuit{}, fmt.Errorf("apply probe outcome of %q: %w", l.ID, err)
	}
	settings := b.o.Policies.For(l.ID).Settings()
	applied, err := st.WithLogger(b.o.Logger).Apply(ctx, l.ID, func(cur circuit.Circuit) circuit.Decision {
		return circuit.DecideProbe(cur, settings, l.Version, result, b.o.Now())
	})
	// Release even when applying failed: the lease only ever guards one
	// call, and it expires anyway.
	if rerr := st.ReleaseLease(ctx, l); rerr != nil && !errors.Is(rerr, store.ErrConflict) {
		b.o.Logger.Warn("releasing a probe lease failed; it expires by itself", "service", l.ID, "error", rerr.Error())
	}
	if err != nil {
		return circuit.Circuit{}, fmt.Errorf("apply probe outcome of %q: %w", l.ID, err)
	}
	after := applied.After()
	b.put(after)
	b.o.Logger.Info("probe outcome", "service", l.ID, "success", result.OK, "reason", result.Reason, "state", string(after.State), "change", applied.Decision.Change.String())
	return after, nil
}

// EndProbes settles the probe leases this extension still holds when its
// sandbox shuts down, within ctx, and returns how many it settled. When
// failed is true (the shutdown reason says the invocation timed out or
// failed, so a probe call may have hung), each counts as a failed probe
// and reopens its circuit; otherwise each is released, so that another
// sandbox may probe at once instead of after the lease expires.
func (b *Breaker) EndProbes(ctx context.Context, failed bool, why string) int {
	now := b.o.Now()
	b.mu.Lock()
	var held []store.Lease
	for tok, l := range b.leases {
		delete(b.leases, tok)
		if now.Before(l.Until) {
			held = append(held, l)
		}
	}
	b.mu.Unlock()
	for _, l := range held {
		if !failed {
			b.releaseWithin(ctx, l)
			continue
		}
		result := circuit.CheckResult{Reason: "probe call did not finish: the sandbox shut down (" + why + ")"}
		if _, err := b.applyProbe(ctx, l, result); err != nil {
			b.o.Logger.Warn("settling a probe at shutdown failed", "service", l.ID, "error", err.Error())
		}
	}
	return len(held)
}
