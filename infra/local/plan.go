package main

import (
	"cmp"
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
		hc := s.HealthCheck
		str := func(d time.Duration) string {
			if d == 0 {
				return ""
			}
			return d.String()
		}
		in := updater.Input{
			ID:                s.ID,
			URL:               cmp.Or(s.URL, healthURL),
			Timeout:           cmp.Or(str(hc.Timeout), localTimeout),
			SlowCallThreshold: str(hc.SlowCallThreshold),
			ExpectedStatus:    hc.ExpectedStatus,
			FailureThreshold:  s.Breaker.FailureThreshold,
			SuccessThreshold:  s.Breaker.SuccessThreshold,
			OpenCooldown:      cooldown.String(),
			MaxOpenCooldown:   (maxCooldownScale * cooldown).String(),
			ConfirmInterval:   cmp.Or(str(hc.ConfirmInterval), localConfirm),
			ReadCopies:        s.ReadCopies,
			// No CheckInterval: the local loop already checks every
			// -interval, and one invocation would hold it for 55s.
		}
		if hc.DisableConfirmation {
			in.ConfirmInterval = "0s"
		}
		if hc.Timeout == 0 && hc.SlowCallThreshold == 0 {
			in.SlowCallThreshold = localSlowCall
		}
		if d := s.Breaker.OpenCooldown; d > 0 && d < cooldown {
			in.OpenCooldown = d.String()
		}
		data, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("service %q: %w", s.ID, err)
		}
		cfg, err := updater.ParseInput(data)
		if err != nil {
			return nil, fmt.Errorf("service %q: %w", s.ID, err)
		}
		// The extension's policy uses the cool-downs the local updater
		// uses, so that the two agree.
		pol := policy.Policy{Passive: s.Passive, Breaker: s.Breaker}
		pol.Breaker.OpenCooldown, pol.Breaker.MaxOpenCooldown = cfg.Settings.OpenCooldown, cfg.Settings.MaxOpenCooldown
		if err := pol.Validate(); err != nil {
			return nil, fmt.Errorf("service %q: %w", s.ID, err)
		}
		out = append(out, check{ID: s.ID, Input: data, Policy: pol})
	}
	return out, nil
}
