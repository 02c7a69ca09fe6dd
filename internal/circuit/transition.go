package circuit

import (
	"fmt"
	"time"
)

// Change says what a Decision asks the store to write.
type Change int

// The kinds of change a check can cause.
const (
	// NoChange: the record stays as it is and nothing is written. A
	// healthy CLOSED circuit with no failures, and an OPEN circuit still
	// cooling down, cost no write.
	NoChange Change = iota
	// CounterUpdate: the state stays but a counter, the open count or the
	// retry time changes. Written conditionally, without a version bump.
	CounterUpdate
	// Transition: the state changes. Written conditionally with
	// version+1, updatedAt, previousState and reason.
	Transition
)

// String returns the change's name.
func (c Change) String() string {
	switch c {
	case NoChange:
		return "none"
	case CounterUpdate:
		return "counters"
	case Transition:
		return "transition"
	}
	return fmt.Sprintf("Change(%d)", int(c))
}

// Decision is what the state machine decided for one check.
type Decision struct {
	// Change is the kind of write the decision needs.
	Change Change
	// Next is the record to write; equal to the input when Change is
	// NoChange.
	Next Circuit
}

// Transitioned reports whether the decision changes the state.
func (d Decision) Transitioned() bool { return d.Change == Transition }

// Decide applies one check result to c at now under settings s (zero fields
// take their defaults) and returns the next record. It is pure: the caller
// persists Next with a write conditioned on c (see package store) and, when
// that write loses a race, re-reads and decides again.
//
// The rules:
//
//	CLOSED    failure: failures+1; at FailureThreshold -> OPEN
//	CLOSED    success: failures reset to 0 (no write when already 0)
//	OPEN      before RetryAt: nothing changes, whatever the result
//	OPEN      after RetryAt, the check is the first trial:
//	            success -> HALF_OPEN with successes=1
//	                       (-> CLOSED at once when SuccessThreshold is 1)
//	            failure -> stays OPEN, openCount+1, RetryAt pushed back
//	HALF_OPEN success: successes+1; at SuccessThreshold -> CLOSED
//	HALF_OPEN failure: -> OPEN, openCount+1
//
// Every opening sets RetryAt to now plus Settings.Cooldown(openCount);
// closing resets openCount to 0. Operator overrides are not consulted: the
// state machine keeps tracking the service underneath an override, so the
// state is current when the override expires or is cleared.
func Decide(c Circuit, s Settings, r CheckResult, now time.Time) Decision {
	s = s.WithDefaults()
	if c.State == "" {
		c.State = Closed
	}
	switch c.State {
	case Open:
		return decideOpen(c, s, r, now)
	case HalfOpen:
		return decideHalfOpen(c, s, r, now)
	default:
		return decideClosed(c, s, r, now)
	}
}

func decideClosed(c Circuit, s Settings, r CheckResult, now time.Time) Decision {
	if r.OK {
		if c.ConsecutiveFailures == 0 && c.ConsecutiveSuccesses == 0 {
			return Decision{Change: NoChange, Next: c}
		}
		next := c
		next.ConsecutiveFailures = 0
		next.ConsecutiveSuccesses = 0
		return Decision{Change: CounterUpdate, Next: next}
	}
	failures := c.ConsecutiveFailures + 1
	if failures >= s.FailureThreshold {
		reason := fmt.Sprintf("%d consecutive failed checks; last: %s", failures, describe(r))
		return open(c, s, now, reason)
	}
	next := c
	next.ConsecutiveFailures = failures
	next.ConsecutiveSuccesses = 0
	return Decision{Change: CounterUpdate, Next: next}
}

func decideOpen(c Circuit, s Settings, r CheckResult, now time.Time) Decision {
	if now.Before(c.RetryAt) {
		return Decision{Change: NoChange, Next: c}
	}
	if !r.OK {
		// The trial failed: stay OPEN for a longer cool-down. The state
		// does not change, so this is not a transition.
		next := c
		next.OpenCount = c.OpenCount + 1
		next.RetryAt = now.Add(s.Cooldown(next.OpenCount))
		next.ConsecutiveFailures = 0
		next.ConsecutiveSuccesses = 0
		return Decision{Change: CounterUpdate, Next: next}
	}
	if s.SuccessThreshold <= 1 {
		return closeCircuit(c, now, fmt.Sprintf("trial check after cool-down succeeded: %s", describe(r)))
	}
	next := transition(c, HalfOpen, now, fmt.Sprintf("cool-down over, trial check succeeded: %s", describe(r)))
	next.ConsecutiveSuccesses = 1
	next.RetryAt = time.Time{}
	return Decision{Change: Transition, Next: next}
}

func decideHalfOpen(c Circuit, s Settings, r CheckResult, now time.Time) Decision {
	if !r.OK {
		return open(c, s, now, fmt.Sprintf("trial check failed while half-open: %s", describe(r)))
	}
	successes := c.ConsecutiveSuccesses + 1
	if successes >= s.SuccessThreshold {
		return closeCircuit(c, now, fmt.Sprintf("%d consecutive successful trials (health checks or probe calls) while half-open", successes))
	}
	next := c
	next.ConsecutiveSuccesses = successes
	next.ConsecutiveFailures = 0
	return Decision{Change: CounterUpdate, Next: next}
}

// open moves c to OPEN with a grown cool-down.
func open(c Circuit, s Settings, now time.Time, reason string) Decision {
	next := transition(c, Open, now, reason)
	next.OpenCount = c.OpenCount + 1
	next.RetryAt = now.Add(s.Cooldown(next.OpenCount))
	return Decision{Change: Transition, Next: next}
}

// closeCircuit moves c to CLOSED and forgets earlier openings.
func closeCircuit(c Circuit, now time.Time, reason string) Decision {
	next := transition(c, Closed, now, reason)
	next.OpenCount = 0
	next.RetryAt = time.Time{}
	return Decision{Change: Transition, Next: next}
}

// transition returns c moved to state to, with the bookkeeping every
// transition carries and the counters reset.
func transition(c Circuit, to State, now time.Time, reason string) Circuit {
	next := c
	next.State = to
	next.PreviousState = c.State
	next.Version = c.Version + 1
	next.UpdatedAt = now
	next.Reason = reason
	next.ConsecutiveFailures = 0
	next.ConsecutiveSuccesses = 0
	return next
}

func describe(r CheckResult) string {
	if r.Reason != "" {
		return r.Reason
	}
	if r.OK {
		return "ok"
	}
	return "failed"
}
