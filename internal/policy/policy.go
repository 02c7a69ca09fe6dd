package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/api"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
)

// EnvPolicies is the environment variable holding Policies as JSON.
const EnvPolicies = api.EnvPolicies

// Constants of circuit.RateSettings that the extension names through
// this package.
const (
	// BucketSize is the length of one counter bucket in the table.
	BucketSize = circuit.BucketSize
	// DefaultProbeTimeout is the default circuit.RateSettings.ProbeTimeout.
	DefaultProbeTimeout = circuit.DefaultProbeTimeout
	// MaxFastTripFailures is the largest circuit.RateSettings.FastTripFailures.
	MaxFastTripFailures = circuit.MaxFastTripFailures
)

// MaxBytes bounds the JSON text of CIRCUIT_BREAKER_POLICIES.
const MaxBytes = 16 << 10

// Policy is the breaker policy of one service: the two groups of
// settings the extension applies, each declared, defaulted and validated
// in package circuit. Zero fields take the defaults (WithDefaults). Its
// JSON form is one flat object (see MarshalFlat): the keys of Passive,
// then those of Breaker.
type Policy struct {
	// Passive tunes detection from the outcomes of real calls and the
	// probes of a HALF_OPEN circuit.
	Passive circuit.RateSettings `json:",inline"`
	// Breaker is the state machine's settings. FailureThreshold is used by
	// the health-check updater only; set it to the same value there.
	Breaker circuit.Settings `json:",inline"`
}

// Policies maps service IDs to their policies.
type Policies map[string]Policy

// MarshalJSON writes the policy as one flat object, zero fields left out.
func (p Policy) MarshalJSON() ([]byte, error) { return MarshalFlat(p) }

// UnmarshalJSON reads one flat object; unknown keys are an error.
func (p *Policy) UnmarshalJSON(b []byte) error { return UnmarshalFlat(b, p) }

// WithDefaults fills zero fields with the defaults.
func (p Policy) WithDefaults() Policy {
	return Policy{Passive: p.Passive.WithDefaults(), Breaker: p.Breaker.WithDefaults()}
}

// Settings returns the state-machine settings, defaults applied.
func (p Policy) Settings() circuit.Settings { return p.Breaker.WithDefaults() }

// Rates returns the passive-detection settings, defaults applied.
func (p Policy) Rates() circuit.RateSettings { return p.Passive.WithDefaults() }

// Validate checks the policy after applying the defaults and names every
// field out of range, one per line.
func (p Policy) Validate() error {
	d := p.WithDefaults()
	return errors.Join(d.Passive.Validate(), d.Breaker.Validate())
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
