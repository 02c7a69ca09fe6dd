package breaker

import (
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/outcomes"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
)

// localPause is how long an environment refuses a circuit on its own after
// a local trip, before its first trial call; each failed trial doubles it,
// up to the circuit's OpenCooldown.
const localPause = time.Second

// lastedSpan is how long a run of consecutive failed calls must have
// lasted, from its first failure to a lookup, for the time rule of a local
// trip. With Poisson arrivals at 20 calls/s the rule misses a sandbox in a
// hard outage by 1 s after its first failure only without a lookup in the
// remaining 0.4 s (e^-8) and without 10 failures before it, or with fewer
// than 6 calls in that second: about 10⁻⁴ per sandbox (simulated), about
// one of 10,000. At 40 % independent errors a run lasts it only when no
// success came for 0.6 s (e^-7.2 at 12 successes/s). A shorter span
// refuses sooner but trips more often below the threshold: with 0.5 s,
// bench-fleet refused 2 % of calls at 40 % errors instead of 0.8–0.9 %.
const lastedSpan = 600 * time.Millisecond

// lastedWithin bounds the time rule to runs that began at most this long
// before the lookup: it serves busy sandboxes, whose tenth failure comes
// late only by chance. A sparse sandbox's run (1 call/s) waits for the
// count rule, whose runs are counted for the fleet-wide trip.
const lastedWithin = 2 * time.Second

// lastedFailures is the run a time-rule local trip needs, for a service
// whose count rule needs fastTripFailures: half of it, rounded up (5 at
// the default of 10), so that raising fastTripFailures makes both rules
// rarer.
func lastedFailures(fastTripFailures int) int { return (fastTripFailures + 1) / 2 }

// runHasLasted reports whether run, of a circuit CLOSED in the cache as c,
// makes this environment refuse it at now by the time rule: at least
// lastedFailures consecutive failed calls, the first of them between
// lastedSpan and lastedWithin ago and after the circuit's last transition.
func runHasLasted(run outcomes.Run, c circuit.Circuit, fastTripFailures int, now time.Time) bool {
	return run.Failures > 0 && run.Failures >= lastedFailures(fastTripFailures) &&
		now.Sub(run.Since) >= lastedSpan && now.Sub(run.Since) <= lastedWithin && !run.Since.Before(c.UpdatedAt)
}

// localTrip is this environment's own refusal of a CLOSED circuit. It
// starts on either of two rules over the environment's run of consecutive
// failed calls of the circuit: the count rule, when the run reaches
// FastTripFailures (checked as outcomes are reported), and the time rule,
// when a run of at least half that has lasted lastedSpan since its first
// failure, and at most lastedWithin (checked at a lookup; it serves the
// sandboxes whose Poisson arrivals bring the tenth failure late). It acts
// at once and costs nothing, but only here: the fleet-wide trip waits for
// evidence that is improbable below the threshold (circuit.DecideRate),
// to which only count-rule runs are counted. One trial call at a time is let through once the pause has
// passed; its success ends the local trip, its failure starts a pause
// twice as long.
type localTrip struct {
	since   time.Time     // when it began: a transition of the circuit after it ends it
	until   time.Time     // no trial call before
	pause   time.Duration // the current pause
	trialAt time.Time     // when the trial call in flight was let through; zero: none
}

// tripLocally starts a local trip of circuit id at now, unless one is
// already running.
func (b *Breaker) tripLocally(id string, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.local[id]; ok {
		return
	}
	b.startLocalLocked(id, now, b.o.Policies.For(id).Rates().FastTripFailures, 0)
}

// startLocalLocked starts a local trip of circuit id at now after a run of
// failures that lasted lasted; b.mu is held.
func (b *Breaker) startLocalLocked(id string, now time.Time, failures int, lasted time.Duration) {
	b.local[id] = &localTrip{since: now, until: now.Add(localPause), pause: localPause}
	b.o.Logger.Info("refusing locally: consecutive failed calls in this environment",
		"service", id, "failures", failures, "lasted", lasted.String(), "pause", localPause.String())
}

// localAdmit decides for a caller of circuit id, CLOSED in the cache as c:
// false while a local trip refuses it, or when the time rule starts one
// now (see runHasLasted). A transition of the circuit since the local trip
// began ends it: the fleet has decided since.
func (b *Breaker) localAdmit(id string, c circuit.Circuit, now time.Time) bool {
	run := b.agg.RunOf(id)
	b.mu.Lock()
	defer b.mu.Unlock()
	lt, ok := b.local[id]
	if !ok {
		if !runHasLasted(run, c, b.o.Policies.For(id).Rates().FastTripFailures, now) {
			return true
		}
		b.startLocalLocked(id, now, run.Failures, now.Sub(run.Since))
		return false
	}
	if c.UpdatedAt.After(lt.since) {
		delete(b.local, id)
		return true
	}
	if now.Before(lt.until) {
		return false
	}
	// One trial call at a time; a trial that never reports frees its
	// place after the probe timeout.
	if !lt.trialAt.IsZero() && now.Sub(lt.trialAt) < b.o.Policies.For(id).Rates().ProbeTimeout {
		return false
	}
	lt.trialAt = now
	return true
}

// localOutcome applies the last reported outcome of circuit id to its
// local trip while a trial call is in flight: a success ends the trip, a
// failure pauses again, twice as long (up to the circuit's OpenCooldown).
func (b *Breaker) localOutcome(id string, ok bool, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	lt, found := b.local[id]
	if !found || lt.trialAt.IsZero() {
		return
	}
	if ok {
		delete(b.local, id)
		b.o.Logger.Info("local refusal ended: a trial call succeeded", "service", id)
		return
	}
	lt.pause = min(2*lt.pause, b.o.Policies.For(id).Settings().OpenCooldown)
	lt.until, lt.trialAt = now.Add(lt.pause), time.Time{}
}

// Refusing reports whether a lookup of circuit id made now would be
// refused whoever makes it, as Lookup decides from what the cache holds,
// without Lookup's side effects: it neither reads nor writes the table,
// waits for no read, starts no local trip and counts no lookup. That is:
// an expired value under the deny failure policy; an override
// FORCED_OPEN; OPEN before its retryAt; or CLOSED while a local trip
// pauses it (no trial call due) or the time rule would start one now. A
// circuit the cache does not hold, an expired value under the allow
// policy, HALF_OPEN (a probe may be let through), OPEN past its retryAt,
// or a local trip whose trial call is due are not refusing every call.
func (b *Breaker) Refusing(id string) bool {
	v, ok := b.cache.PeekValue(id)
	if !ok {
		return false
	}
	if v.Expired {
		return !b.o.FailAllow
	}
	c, now := v.Circuit, v.At
	switch c.ActiveOverride(now) {
	case circuit.ForcedOpen:
		return true
	case circuit.ForcedClosed:
		return false
	}
	switch c.State {
	case circuit.Open:
		return c.RetryAt.IsZero() || now.Before(c.RetryAt)
	case circuit.HalfOpen:
		return false
	}
	run := b.agg.RunOf(id)
	rates := b.o.Policies.For(id).Rates()
	b.mu.Lock()
	defer b.mu.Unlock()
	lt, ok := b.local[id]
	if !ok || c.UpdatedAt.After(lt.since) {
		return runHasLasted(run, c, rates.FastTripFailures, now)
	}
	if now.Before(lt.until) {
		return true
	}
	return !lt.trialAt.IsZero() && now.Sub(lt.trialAt) < rates.ProbeTimeout
}

// LocalTrip reports whether this environment refuses circuit id on its
// own (see localTrip), trial calls included, without side effects.
func (b *Breaker) LocalTrip(id string) bool {
	c, _ := b.peek(id)
	b.mu.Lock()
	defer b.mu.Unlock()
	lt, ok := b.local[id]
	return ok && !c.UpdatedAt.After(lt.since)
}
