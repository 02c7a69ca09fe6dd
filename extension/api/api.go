// Package api defines the wire format of the circuit-breaker extension's
// local HTTP API, shared by the extension's server and the Go client.
//
// The API listens on 127.0.0.1 only:
//
//	GET /health               liveness, no token
//	GET /circuits/{id}        one circuit (Circuit)
//	GET /circuits?ids=a,b     several circuits (Circuits), in the order asked
//	POST /circuits/{id}/outcomes  report call outcomes (Outcome or Outcomes), 202 Accepted
//
// Every request except /health must carry the header X-Circuit-Breaker-Token
// with the execution environment's token (see Token: AWS_SESSION_TOKEN,
// else AWS_CONTAINER_AUTHORIZATION_TOKEN). Errors are JSON objects with a
// message (Error).
package api

import "time"

// HeaderToken is the request header that must carry the token (see
// Token).
const HeaderToken = "X-Circuit-Breaker-Token"

// DefaultPort is the loopback port the extension listens on by default.
const DefaultPort = 4243

// MaxIDs is the most circuits one GET /circuits request may ask for.
const MaxIDs = 100

// Circuit is the extension's answer for one circuit.
type Circuit struct {
	// ID is the service ID.
	ID string `json:"id"`
	// State is the effective state: CLOSED, OPEN or HALF_OPEN, with an
	// active operator override applied. When the failure policy decided
	// (FailMode true) and nothing is known, it is CLOSED for allow and
	// OPEN for deny.
	State string `json:"state"`
	// Allowed says whether the caller may call the service now.
	Allowed bool `json:"allowed"`
	// Version is the circuit's transition counter; 0 for a circuit that
	// was never written.
	Version int64 `json:"version"`
	// UpdatedAt is when the circuit last changed state; null when never.
	UpdatedAt *time.Time `json:"updatedAt"`
	// Stale is true when the cached value could not be refreshed in time:
	// the last read failed, a read has been pending longer than the miss
	// timeout, or the value is older than the maximum age
	// (CIRCUIT_BREAKER_MAX_AGE) because its refresh did not come back
	// within the miss timeout.
	Stale bool `json:"stale"`
	// AgeMs is the time since the value was last read from the table, in
	// milliseconds; -1 when it never was. With a maximum age set, it is not
	// over that age unless Stale is true.
	AgeMs int64 `json:"ageMs"`
	// FailMode is true when the failure policy (CIRCUIT_BREAKER_FAIL_MODE)
	// decided Allowed instead of the circuit's state: nothing is known, or
	// reads have failed for longer than the maximum staleness.
	FailMode bool `json:"failMode,omitempty"`
	// Reason says why the last transition happened.
	Reason string `json:"reason,omitempty"`
	// Override is the active operator override, FORCED_OPEN or
	// FORCED_CLOSED, if any.
	Override string `json:"override,omitempty"`
	// OverrideUntil is when the active override expires; absent if never.
	OverrideUntil *time.Time `json:"overrideUntil,omitempty"`
	// RetryAt is when an OPEN circuit may move to HALF_OPEN.
	RetryAt *time.Time `json:"retryAt,omitempty"`
	// Probe is true when the circuit is HALF_OPEN and this caller holds
	// one of the fleet's probe leases: its call is a trial whose outcome,
	// reported with ProbeToken, closes or reopens the circuit.
	Probe bool `json:"probe,omitempty"`
	// ProbeToken identifies the probe lease; send it back in the
	// outcome's probeToken.
	ProbeToken string `json:"probeToken,omitempty"`
}

// Limits of POST /circuits/{id}/outcomes.
const (
	// MaxOutcomes is the most outcomes one request may carry.
	MaxOutcomes = 100
	// MaxOutcomeBodyBytes bounds the request body.
	MaxOutcomeBodyBytes = 16 << 10
	// MaxLatencyMs bounds an outcome's latency (one hour).
	MaxLatencyMs = 3_600_000
)

// Outcome is the result of one call to the service, the body of
// POST /circuits/{id}/outcomes or one element of Outcomes.
type Outcome struct {
	// Success says whether the call succeeded. Required.
	Success *bool `json:"success"`
	// LatencyMs is how long the call took, in milliseconds (0..3600000).
	LatencyMs int64 `json:"latencyMs"`
	// ProbeToken, when set, ties the outcome to the probe lease the caller
	// was given (Circuit.ProbeToken): it then decides the HALF_OPEN
	// circuit instead of being counted.
	ProbeToken string `json:"probeToken,omitempty"`
}

// Outcomes is a batch of outcomes of one circuit.
type Outcomes struct {
	Outcomes []Outcome `json:"outcomes"`
}

// Accepted is the answer to POST /circuits/{id}/outcomes.
type Accepted struct {
	// Accepted is the number of outcomes taken.
	Accepted int `json:"accepted"`
	// State is the circuit's state after a probe outcome was applied;
	// absent when the request held no probe outcome.
	State string `json:"state,omitempty"`
}

// Circuits is the answer to GET /circuits?ids=...
type Circuits struct {
	Circuits []Circuit `json:"circuits"`
}

// Health is the answer to GET /health.
type Health struct {
	Status string `json:"status"`
}

// Error is the body of every error response.
type Error struct {
	Message string `json:"message"`
}
