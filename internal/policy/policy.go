package policy

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/api"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
)

// EnvPolicies is the environment variable holding Policies as JSON.
const EnvPolicies = api.EnvPolicies

// Defaults and bounds of the fields that are not circuit.Settings or
// circuit.RateSettings defaults.
const (
	DefaultHalfOpenProbes = 1
	MaxHalfOpenProbes     = 10
	DefaultProbeTimeout   = 10 * time.Second
	MinProbeTimeout       = time.Second
	MaxProbeTimeout       = 15 * time.Minute
	MinWindow             = 5 * time.Second
	MaxWindow             = 5 * time.Minute
	MaxMinimumCalls       = 100000
	MinSlowCallDuration   = time.Millisecond
	MaxSlowCallDuration   = 5 * time.Minute
	MaxFastTripFailures   = 1000
	// MaxBytes bounds the JSON text of CIRCUIT_BREAKER_POLICIES.
	MaxBytes = 16 << 10
)

// Policy is the breaker policy of one service. Zero fields take the
// defaults (WithDefaults). FailureThreshold is used by the health-check
// updater only; set it to the same value there.
type Policy struct {
	// FailureRateThreshold is the failure rate of real calls, in percent
	// (1..100), at or above which a CLOSED circuit opens. Default 50.
	FailureRateThreshold float64 `json:"failureRateThreshold,omitempty"`
	// MinimumCalls is the fewest calls in the window for the rates to
	// count (1..100000). Default 10.
	MinimumCalls int `json:"minimumCalls,omitempty"`
	// Window is the sliding window of the rates (5s..5m, whole multiple
	// of the 5 s bucket). Default 30s.
	Window Duration `json:"window,omitempty"`
	// SlowCallRateThreshold is the slow-call rate, in percent (1..100), at
	// or above which a CLOSED circuit opens. Default 100.
	SlowCallRateThreshold float64 `json:"slowCallRateThreshold,omitempty"`
	// SlowCallDuration is the latency from which a call counts as slow
	// (1ms..5m). Default 3s.
	SlowCallDuration Duration `json:"slowCallDuration,omitempty"`
	// FastTripFailures is the number of consecutive failed calls, seen by
	// one execution environment, that open a CLOSED circuit for the whole
	// fleet at once, beside the rates (1..1000). Default 10.
	FastTripFailures int `json:"fastTripFailures,omitempty"`
	// HalfOpenProbes is the most concurrent trial calls across the fleet
	// while HALF_OPEN (1..10). Default 1.
	HalfOpenProbes int `json:"halfOpenProbes,omitempty"`
	// ProbeTimeout is how long a probe lease lasts (1s..15m): a probe
	// call's outcome must be reported within it, and a lease whose
	// outcome never comes frees its slot after it. Set it to at least the
	// timeout of the calls to the service. Default 10s.
	ProbeTimeout Duration `json:"probeTimeout,omitempty"`
	// SuccessThreshold is the number of successful probes (or checks) that
	// closes a HALF_OPEN circuit (1..100). Default 2.
	SuccessThreshold int `json:"successThreshold,omitempty"`
	// FailureThreshold is the number of consecutive failed health checks
	// that opens a CLOSED circuit (1..100). Default 3.
	FailureThreshold int `json:"failureThreshold,omitempty"`
	// OpenCooldown is how long a circuit stays OPEN before probes
	// (1s..24h), doubling with each reopening. Default 30s.
	OpenCooldown Duration `json:"openCooldown,omitempty"`
	// MaxOpenCooldown caps the growing cool-down (OpenCooldown..24h).
	// Default 5m.
	MaxOpenCooldown Duration `json:"maxOpenCooldown,omitempty"`
}

// Policies maps service IDs to their policies.
type Policies map[string]Policy

// BucketSize is the length of one counter bucket in the table.
const BucketSize = 5 * time.Second

// WithDefaults fills zero fields with the defaults.
func (p Policy) WithDefaults() Policy {
	s := p.Settings()
	r := p.Rates()
	p.FailureThreshold, p.SuccessThreshold = s.FailureThreshold, s.SuccessThreshold
	p.OpenCooldown, p.MaxOpenCooldown = Duration(s.OpenCooldown), Duration(s.MaxOpenCooldown)
	p.FailureRateThreshold, p.MinimumCalls, p.Window = r.FailureRateThreshold, r.MinimumCalls, Duration(r.Window)
	p.SlowCallRateThreshold, p.SlowCallDuration = r.SlowCallRateThreshold, Duration(r.SlowCallDuration)
	p.FastTripFailures = r.FastTripFailures
	p.HalfOpenProbes = cmp.Or(p.HalfOpenProbes, DefaultHalfOpenProbes)
	p.ProbeTimeout = cmp.Or(p.ProbeTimeout, Duration(DefaultProbeTimeout))
	return p
}

// Settings returns the state-machine settings, defaults applied.
func (p Policy) Settings() circuit.Settings {
	return circuit.Settings{
		FailureThreshold: p.FailureThreshold,
		SuccessThreshold: p.SuccessThreshold,
		OpenCooldown:     time.Duration(p.OpenCooldown),
		MaxOpenCooldown:  time.Duration(p.MaxOpenCooldown),
	}.WithDefaults()
}

// Rates returns the passive-detection settings, defaults applied.
func (p Policy) Rates() circuit.RateSettings {
	return circuit.RateSettings{
		FailureRateThreshold:  p.FailureRateThreshold,
		MinimumCalls:          p.MinimumCalls,
		Window:                time.Duration(p.Window),
		SlowCallRateThreshold: p.SlowCallRateThreshold,
		SlowCallDuration:      time.Duration(p.SlowCallDuration),
		FastTripFailures:      p.FastTripFailures,
	}.WithDefaults()
}

// Validate checks the policy after applying the defaults and names every
// field out of range.
func (p Policy) Validate() error {
	d := p.WithDefaults()
	var errs []error
	if err := d.Settings().Validate(); err != nil {
		errs = append(errs, err)
	}
	if d.FailureRateThreshold < 1 || d.FailureRateThreshold > 100 {
		errs = append(errs, fmt.Errorf("failureRateThreshold %g is out of range 1..100", d.FailureRateThreshold))
	}
	if d.SlowCallRateThreshold < 1 || d.SlowCallRateThreshold > 100 {
		errs = append(errs, fmt.Errorf("slowCallRateThreshold %g is out of range 1..100", d.SlowCallRateThreshold))
	}
	if d.MinimumCalls < 1 || d.MinimumCalls > MaxMinimumCalls {
		errs = append(errs, fmt.Errorf("minimumCalls %d is out of range 1..%d", d.MinimumCalls, MaxMinimumCalls))
	}
	if w := time.Duration(d.Window); w < MinWindow || w > MaxWindow || w%BucketSize != 0 {
		errs = append(errs, fmt.Errorf("window %s is out of range %s..%s or not a multiple of %s", w, MinWindow, MaxWindow, BucketSize))
	}
	if s := time.Duration(d.SlowCallDuration); s < MinSlowCallDuration || s > MaxSlowCallDuration {
		errs = append(errs, fmt.Errorf("slowCallDuration %s is out of range %s..%s", s, MinSlowCallDuration, MaxSlowCallDuration))
	}
	if d.FastTripFailures < 1 || d.FastTripFailures > MaxFastTripFailures {
		errs = append(errs, fmt.Errorf("fastTripFailures %d is out of range 1..%d", d.FastTripFailures, MaxFastTripFailures))
	}
	if d.HalfOpenProbes < 1 || d.HalfOpenProbes > MaxHalfOpenProbes {
		errs = append(errs, fmt.Errorf("halfOpenProbes %d is out of range 1..%d", d.HalfOpenProbes, MaxHalfOpenProbes))
	}
	if pt := time.Duration(d.ProbeTimeout); pt < MinProbeTimeout || pt > MaxProbeTimeout {
		errs = append(errs, fmt.Errorf("probeTimeout %s is out of range %s..%s", pt, MinProbeTimeout, MaxProbeTimeout))
	}
	return errors.Join(errs...)
}

// For returns the policy of service id with defaults applied; a service
// without an entry gets the defaults.
func (ps Policies) For(id string) Policy {
	return ps[id].WithDefaults()
}

// Validate checks every service ID and policy, naming each bad one.
func (ps Policies) Validate() error {
	ids := make([]string, 0, len(ps))
	for id := range ps {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var errs []error
	for _, id := range ids {
		if err := circuit.ValidateID(id); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := ps[id].Validate(); err != nil {
			errs = append(errs, fmt.Errorf("service %q: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

// Parse reads and validates Policies from JSON; blank text gives none
// (defaults for every service). Unknown fields are an error.
func Parse(text string) (Policies, error) {
	if len(bytes.TrimSpace([]byte(text))) == 0 {
		return Policies{}, nil
	}
	if len(text) > MaxBytes {
		return nil, fmt.Errorf("%s is %d bytes, more than %d", EnvPolicies, len(text), MaxBytes)
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(text)))
	dec.DisallowUnknownFields()
	var ps Policies
	if err := dec.Decode(&ps); err != nil {
		return nil, fmt.Errorf("%s: want a JSON object keyed by service ID: %w", EnvPolicies, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%s: trailing data after the JSON object", EnvPolicies)
	}
	if ps == nil {
		ps = Policies{}
	}
	if err := ps.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", EnvPolicies, err)
	}
	return ps, nil
}

// String returns the compact JSON form, the value for EnvPolicies.
func (ps Policies) String() string {
	b, err := json.Marshal(ps)
	if err != nil {
		return "{}"
	}
	return string(b)
}
