package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/appconfig"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/policy"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/updater"
)

// Local defaults for a check when services.json leaves them unset: short,
// so that a hanging service fails its check quickly.
const (
	localTimeout     = "1s"
	localSlowCall    = "500ms"
	localConfirm     = "1s" // a failure is confirmed, and the circuit opens, within about 2s
	maxCooldownScale = 4    // MaxOpenCooldown = scale × the local cool-down
)

// check is one monitored service's updater input, as its EventBridge rule
// would send it, and its policy, as the construct would give the
// extension in CIRCUIT_BREAKER_POLICIES.
type check struct {
	ID     string
	Input  json.RawMessage
	Policy policy.Policy
}

// plan turns the app's services into updater inputs for the local stack:
// services without a URL check the local mock API's health path, the
// cool-down is shortened to cooldown (unless a service sets a shorter
// one) and failures are confirmed 1s apart (unless a service sets its
// own interval), so that a demo runs through OPEN and back in about a
// minute. A service's checkInterval is left out.
func plan(f appconfig.File, healthURL string, cooldown time.Duration) ([]check, error) {
	if cooldown < time.Second {
		return nil, fmt.Errorf("cool-down %s: at least 1s", cooldown)
	}
	var out []check
	for _, s := range f.Services {
		in := updater.Input{
			ID:                s.ID,
			URL:               s.URL,
			Timeout:           s.Timeout,
			SlowCallThreshold: s.SlowCallThreshold,
			ExpectedStatus:    s.ExpectedStatus,
			FailureThreshold:  s.FailureThreshold,
			SuccessThreshold:  s.SuccessThreshold,
			OpenCooldown:      cooldown.String(),
			MaxOpenCooldown:   (maxCooldownScale * cooldown).String(),
			ConfirmInterval:   s.ConfirmInterval,
			// No CheckInterval: the local loop already checks every
			// -interval, and one invocation would hold it for 55s.
		}
		if in.ConfirmInterval == "" {
			in.ConfirmInterval = localConfirm
		}
		if in.URL == "" {
			in.URL = healthURL
		}
		if in.Timeout == "" {
			in.Timeout = localTimeout
			if in.SlowCallThreshold == "" {
				in.SlowCallThreshold = localSlowCall
			}
		}
		if d, _ := appconfig.Duration(s.OpenCooldown); d > 0 && d < cooldown {
			in.OpenCooldown = s.OpenCooldown
		}
		data, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("service %q: %w", s.ID, err)
		}
		if _, err := updater.ParseInput(data); err != nil {
			return nil, fmt.Errorf("service %q: %w", s.ID, err)
		}
		pol, err := servicePolicy(s, in)
		if err != nil {
			return nil, fmt.Errorf("service %q: %w", s.ID, err)
		}
		out = append(out, check{ID: s.ID, Input: data, Policy: pol})
	}
	return out, nil
}

// servicePolicy is the extension's policy of service s, with the
// cool-downs the local updater uses (in), so that the two agree.
func servicePolicy(s appconfig.Service, in updater.Input) (policy.Policy, error) {
	var d [5]time.Duration
	for i, v := range []string{s.Window, s.SlowCallDuration, s.ProbeTimeout, in.OpenCooldown, in.MaxOpenCooldown} {
		parsed, err := appconfig.Duration(v)
		if err != nil {
			return policy.Policy{}, err
		}
		d[i] = parsed
	}
	p := policy.Policy{
		FailureRateThreshold:  s.FailureRateThreshold,
		MinimumCalls:          s.MinimumCalls,
		Window:                policy.Duration(d[0]),
		SlowCallRateThreshold: s.SlowCallRateThreshold,
		SlowCallDuration:      policy.Duration(d[1]),
		HalfOpenProbes:        s.HalfOpenProbes,
		FastTripFailures:      s.FastTripFailures,
		ProbeTimeout:          policy.Duration(d[2]),
		SuccessThreshold:      s.SuccessThreshold,
		FailureThreshold:      s.FailureThreshold,
		OpenCooldown:          policy.Duration(d[3]),
		MaxOpenCooldown:       policy.Duration(d[4]),
	}
	return p, p.Validate()
}
