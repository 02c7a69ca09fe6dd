package circuit

import (
	"fmt"
	"regexp"
	"time"
)

// State is the position of a circuit in the breaker state machine.
type State string

// The three circuit states.
const (
	Closed   State = "CLOSED"
	Open     State = "OPEN"
	HalfOpen State = "HALF_OPEN"
)

// Valid reports whether s is one of the three circuit states.
func (s State) Valid() bool {
	return s == Closed || s == Open || s == HalfOpen
}

// ParseState converts a string into a State, failing on unknown values.
func ParseState(v string) (State, error) {
	s := State(v)
	if !s.Valid() {
		return "", fmt.Errorf("circuit: unknown state %q (want CLOSED, OPEN or HALF_OPEN)", v)
	}
	return s, nil
}

// Override is an operator decision that wins over the circuit state until
// it expires.
type Override string

// The operator overrides. NoOverride is the zero value.
const (
	NoOverride   Override = ""
	ForcedOpen   Override = "FORCED_OPEN"
	ForcedClosed Override = "FORCED_CLOSED"
)

// MaxIDLength bounds the length of a service ID.
const MaxIDLength = 64

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]*$`)

// ValidateID checks that id is a usable service ID: 1 to 64 characters,
// letters, digits, '-' and '_', starting with a letter or digit. Such IDs
// are safe as DynamoDB keys, construct IDs, URL path segments and
// environment variable values.
func ValidateID(id string) error {
	if id == "" {
		return fmt.Errorf("circuit: empty service ID")
	}
	if len(id) > MaxIDLength {
		return fmt.Errorf("circuit: service ID %q is longer than %d characters", id, MaxIDLength)
	}
	if !idPattern.MatchString(id) {
		return fmt.Errorf("circuit: service ID %q may hold only letters, digits, '-' and '_', and must start with a letter or digit", id)
	}
	return nil
}

// Circuit is the stored record of one monitored service. The zero value of
// every counter is meaningful, so a Circuit decoded from a sparse item is
// usable. Package store maps it to the table's item layout (see docs/state-model.md).
type Circuit struct {
	// ID is the service ID and the table's partition key.
	ID string
	// State is the breaker state. An empty state is treated as CLOSED.
	State State
	// Version counts the transitions the circuit went through; every
	// transition is a write conditioned on the previous version.
	Version int64
	// UpdatedAt is when the last transition happened.
	UpdatedAt time.Time
	// PreviousState is the state the last transition left.
	PreviousState State
	// Reason says why the last transition happened.
	Reason string
	// ConsecutiveFailures counts failed checks since the last success.
	ConsecutiveFailures int
	// ConsecutiveSuccesses counts successful checks since the last failure.
	ConsecutiveSuccesses int
	// OpenCount counts consecutive openings without a full recovery; it
	// grows the cool-down.
	OpenCount int
	// RetryAt is when an OPEN circuit may move to HALF_OPEN.
	RetryAt time.Time
	// Override is an operator override, or NoOverride.
	Override Override
	// OverrideReason says why the operator set the override.
	OverrideReason string
	// OverrideUntil is when the override expires; the zero time means never.
	OverrideUntil time.Time
	// OverrideAt is when the operator set the override.
	OverrideAt time.Time
}

// New returns the record of a circuit that has never been written: CLOSED
// at version 0.
func New(id string) Circuit {
	return Circuit{ID: id, State: Closed}
}

// ActiveOverride returns the override in force at now, or NoOverride when
// there is none or it has expired.
func (c Circuit) ActiveOverride(now time.Time) Override {
	if c.Override == NoOverride {
		return NoOverride
	}
	if !c.OverrideUntil.IsZero() && !now.Before(c.OverrideUntil) {
		return NoOverride
	}
	return c.Override
}

// EffectiveState is the state callers should act on at now: an active
// override wins, an empty state reads as CLOSED.
func (c Circuit) EffectiveState(now time.Time) State {
	switch c.ActiveOverride(now) {
	case ForcedOpen:
		return Open
	case ForcedClosed:
		return Closed
	}
	if c.State == "" {
		return Closed
	}
	return c.State
}

// Allowed reports whether a caller may call the service at now. OPEN denies;
// CLOSED allows; HALF_OPEN allows, since limiting trial calls is the job of
// the probe lease held outside this record.
func (c Circuit) Allowed(now time.Time) bool {
	return c.EffectiveState(now) != Open
}
