package breaker

import (
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
)

// localPause is how long an environment refuses a circuit on its own after
// a run of FastTripFailures consecutive failed calls, before its first
// trial call; each failed trial doubles it, up to the circuit's
// OpenCooldown.
const localPause = time.Second

// localTrip is this environment's own refusal of a CLOSED circuit after
// it saw a run of FastTripFailures consecutive failed calls. It acts at
// once and costs nothing, but only here: the fleet-wide trip waits for
// evidence that is improbable below the threshold (circuit.DecideRate),
// to which the run is counted. One trial call at a time is let through
// once the pause has passed; its success ends the local trip, its failure
// starts a pause twice as long.
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
	b.local[id] = &localTrip{since: now, until: now.Add(localPause), pause: localPause}
	b.o.Logger.Info("refusing locally: consecutive failed calls in this environment",
		"service", id, "failures", b.o.Policies.For(id).Rates().FastTripFailures, "pause", localPause.String())
}

// localAdmit decides for a caller of circuit id, CLOSED in the cache as c:
// false while a local trip refuses it. A transition of the circuit since
// the local trip began ends it: the fleet has decided since.
func (b *Breaker) localAdmit(id string, c circuit.Circuit, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	lt, ok := b.local[id]
	if !ok {
		return true
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
