// Package appconfig reads the monitored services of the CDK app from
// infra/services.json, the one file that both the deployed stack and the
// local stack read, so the two do not drift.
package appconfig

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
)

// DefaultPath is the configuration file, relative to the repository root.
const DefaultPath = "infra/services.json"

// File is the content of the configuration file.
type File struct {
	// Services are the monitored services.
	Services []Service `json:"services"`
}

// Service is one monitored service. Durations are Go duration strings
// ("4s", "5m"); empty or zero fields keep the defaults.
type Service struct {
	// ID names the circuit.
	ID string `json:"id"`
	// URL is the health-check URL; empty means the mock API's health path.
	URL string `json:"url,omitempty"`
	// Schedule is an EventBridge schedule expression; default rate(1 minute).
	Schedule string `json:"schedule,omitempty"`
	// Timeout bounds one check.
	Timeout string `json:"timeout,omitempty"`
	// SlowCallThreshold marks slower responses as failed.
	SlowCallThreshold string `json:"slowCallThreshold,omitempty"`
	// ExpectedStatus lists healthy statuses, such as "200-299".
	ExpectedStatus string `json:"expectedStatus,omitempty"`
	// FailureThreshold is the consecutive failures that open the circuit.
	FailureThreshold int `json:"failureThreshold,omitempty"`
	// SuccessThreshold is the consecutive successes that close it.
	SuccessThreshold int `json:"successThreshold,omitempty"`
	// OpenCooldown is the first cool-down of an open circuit.
	OpenCooldown string `json:"openCooldown,omitempty"`
	// MaxOpenCooldown caps the cool-down.
	MaxOpenCooldown string `json:"maxOpenCooldown,omitempty"`
	// ConfirmInterval spaces the checks that confirm a failure within one
	// invocation; "0s" turns them off.
	ConfirmInterval string `json:"confirmInterval,omitempty"`
	// CheckInterval makes each scheduled run check every interval for up
	// to 55s.
	CheckInterval string `json:"checkInterval,omitempty"`
	// FailureRateThreshold is the failure rate of real calls, in percent,
	// that opens the circuit.
	FailureRateThreshold float64 `json:"failureRateThreshold,omitempty"`
	// MinimumCalls is the fewest calls in the window for the rates to count.
	MinimumCalls int `json:"minimumCalls,omitempty"`
	// Window is the sliding window of the rates, a multiple of 5s.
	Window string `json:"window,omitempty"`
	// SlowCallRateThreshold is the slow-call rate, in percent, that opens
	// the circuit.
	SlowCallRateThreshold float64 `json:"slowCallRateThreshold,omitempty"`
	// SlowCallDuration is the latency from which a call counts as slow.
	SlowCallDuration string `json:"slowCallDuration,omitempty"`
	// FastTripFailures is the number of consecutive failed calls in one
	// execution environment that open the circuit at once.
	FastTripFailures int `json:"fastTripFailures,omitempty"`
	// HalfOpenProbes is the most concurrent trial calls while HALF_OPEN.
	HalfOpenProbes int `json:"halfOpenProbes,omitempty"`
	// ProbeTimeout is how long a probe lease lasts.
	ProbeTimeout string `json:"probeTimeout,omitempty"`
}

// Load reads and validates the configuration file at path.
func Load(path string) (File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return File{}, fmt.Errorf("appconfig: %w", err)
	}
	return Parse(data)
}

// Parse decodes and validates a configuration, rejecting unknown keys.
func Parse(data []byte) (File, error) {
	var f File
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return File{}, fmt.Errorf("appconfig: parse: %w", err)
	}
	if len(f.Services) == 0 {
		return File{}, fmt.Errorf("appconfig: no services: list at least one under \"services\"")
	}
	for i, s := range f.Services {
		if err := circuit.ValidateID(s.ID); err != nil {
			return File{}, fmt.Errorf("appconfig: services[%d]: %w", i, err)
		}
		if _, _, err := s.Confirmation(); err != nil {
			return File{}, fmt.Errorf("appconfig: service %q: confirmInterval: %w", s.ID, err)
		}
		for name, v := range map[string]string{"checkInterval": s.CheckInterval, "timeout": s.Timeout, "slowCallThreshold": s.SlowCallThreshold, "openCooldown": s.OpenCooldown, "maxOpenCooldown": s.MaxOpenCooldown, "window": s.Window, "slowCallDuration": s.SlowCallDuration, "probeTimeout": s.ProbeTimeout} {
			if _, err := Duration(v); err != nil {
				return File{}, fmt.Errorf("appconfig: service %q: %s: %w", s.ID, name, err)
			}
		}
	}
	return f, nil
}

// Duration parses an optional Go duration string; "" is zero.
func Duration(v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, err
	}
	if d <= 0 {
		return 0, fmt.Errorf("duration %q must be positive", v)
	}
	return d, nil
}

// Confirmation reads ConfirmInterval: the interval (zero for the default)
// and whether confirmation is off ("0s").
func (s Service) Confirmation() (interval time.Duration, off bool, err error) {
	if s.ConfirmInterval == "" {
		return 0, false, nil
	}
	d, err := time.ParseDuration(s.ConfirmInterval)
	if err != nil {
		return 0, false, err
	}
	if d < 0 {
		return 0, false, fmt.Errorf("duration %q must not be negative", s.ConfirmInterval)
	}
	return d, d == 0, nil
}
