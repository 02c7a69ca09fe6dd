package breaker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/api"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/extapi"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/outcomes"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
)

// probeApplyTimeout bounds applying one probe outcome and releasing its
// lease, while the reporting caller waits.
const probeApplyTimeout = time.Second

// settleParallelism bounds the leases settled at once at SHUTDOWN.
const settleParallelism = 8

// ErrStopped is Report's error for outcomes it rejected because the
// breaker was stopped (SHUTDOWN): they were not counted.
var ErrStopped = errors.New("breaker: stopped for shutdown; outcomes not counted")

// ErrFull is returned by Report when the outcomes are for a new circuit
// and memory already holds the counts of Options.MaxCircuits circuits: the
// ordinary outcomes were rejected, not counted.
var ErrFull = outcomes.ErrFull

// Stop ends the breaker's intake; SHUTDOWN calls it once the local API has
// stopped serving, before it settles leases and flushes. From its return
// on, Report rejects ordinary outcomes with ErrStopped rather than count
// them after the last flush, and lookups neither end a cool-down nor claim
// a lease (a claim that completes afterwards is given back). A report is
// therefore either counted by the last flush or rejected, never dropped
// silently.
func (b *Breaker) Stop() {
	b.gate.Lock()
	defer b.gate.Unlock()
	b.stopped.Store(true)
	b.stopOnce.Do(func() { close(b.stopping) })
}

// record counts counts of circuit id unless the breaker is stopped (see
// outcomes.Aggregator.Record for trailing and notBefore).
func (b *Breaker) record(id string, now time.Time, counts circuit.Counts, trailing int, notBefore time.Time) (outcomes.Run, error) {
	b.gate.RLock()
	defer b.gate.RUnlock()
	if b.stopped.Load() {
		return outcomes.Run{}, ErrStopped
	}
	return b.agg.Record(id, now, counts, trailing, notBefore)
}

// Report takes validated outcomes of circuit id. Outcomes are counted in
// memory; a later flush writes them as the write policy of package
// outcomes says. When this
// extension's run of consecutive failed calls of the circuit reaches the
// service's fastTripFailures, this extension refuses the circuit at once
// on its own (see localTrip), and the run is counted for the fleet-wide
// decision (circuit.DecideRate), which the next flush writes and
// evaluates. An outcome carrying the token of a lease this
// extension handed out is a probe outcome instead: it is applied to the
// HALF_OPEN circuit at once (close after SuccessThreshold successes,
// reopen on a failure) and the lease is released; the answer then holds
// the circuit's state. A probe token that is unknown or expired is counted
// as an ordinary outcome.
//
// Ordinary outcomes rejected are left out of Accepted: after Stop the
// error wraps ErrStopped; when memory is full it wraps ErrFull. Accepted
// counts exactly the outcomes taken, so an error with Accepted 0 means
// none was.
func (b *Breaker) Report(ctx context.Context, id string, outs []api.Outcome) (api.Accepted, error) {
	if b.stopped.Load() {
		return api.Accepted{}, ErrStopped
	}
	now := b.o.Now()
	pol := b.o.Policies.For(id)
	rates := pol.Rates()
	var counts circuit.Counts
	trailing := 0
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
		if ok {
			trailing = 0
		} else {
			counts.Failures++
			trailing++
		}
		if latency >= rates.SlowCallDuration {
			counts.Slow++
		}
	}
	if counts.Calls == 0 {
		return res, errors.Join(errs...)
	}
	cached, _ := b.peek(id)
	run, err := b.record(id, now, counts, trailing, cached.UpdatedAt)
	if err != nil {
		errs = append(errs, fmt.Errorf("%d outcomes of %q rejected: %w", counts.Calls, id, err))
		return res, errors.Join(errs...)
	}
	res.Accepted += int(counts.Calls)
	b.localOutcome(id, trailing == 0, now)
	if run.Failures >= rates.FastTripFailures {
		// A run: this environment refuses at once, on its own; the run is
		// counted for the fleet-wide decision (circuit.DecideRate's runs
		// rule), and its bucket is written at the next flush.
		b.agg.CountRun(id, now)
		if cached.State == circuit.Closed || cached.State == "" {
			b.tripLocally(id, now)
		}
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

// ProbesFailed says whether the probe calls still running when the sandbox
// shuts down for reason (the SHUTDOWN event's) count as failed: after
// "timeout" or "failure" a probe call may have hung; after "spindown", or
// in a local run (""), it may not.
func ProbesFailed(reason string) bool {
	return reason == extapi.ReasonTimeout || reason == extapi.ReasonFailure
}

// EndProbes settles the probe leases this extension still holds when its
// sandbox shuts down for reason, within ctx, and returns how many it
// settled. When the probes failed (see ProbesFailed), each counts as a
// failed probe and reopens its circuit; otherwise each is released, so
// that another sandbox may probe at once instead of after the lease
// expires. Leases are settled concurrently; then EndProbes waits, still
// within ctx, for leases being given back in the background.
func (b *Breaker) EndProbes(ctx context.Context, reason string) int {
	failed := ProbesFailed(reason)
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
	var wg sync.WaitGroup
	sem := make(chan struct{}, settleParallelism)
	for _, l := range held {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if !failed {
				b.releaseWithin(ctx, l)
				return
			}
			result := circuit.CheckResult{Reason: "probe call did not finish: the sandbox shut down (" + reason + ")"}
			if _, err := b.applyProbe(ctx, l, result); err != nil {
				b.o.Logger.Warn("settling a probe at shutdown failed", "service", l.ID, "error", err.Error())
			}
		}()
	}
	wg.Wait()
	if err := b.bg.Wait(ctx); err != nil {
		b.o.Logger.Warn("leases being given back did not finish before the deadline; they expire by themselves", "error", err.Error())
	}
	return len(held)
}
