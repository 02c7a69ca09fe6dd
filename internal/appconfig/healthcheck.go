package appconfig

import (
	"cmp"
	"errors"
	"fmt"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/healthcheck"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/updater"
)

// HealthCheck tunes the updater's check of one service: the one
// declaration of these settings, used by services.json and by the
// construct's props. Zero fields keep the updater's defaults.
type HealthCheck struct {
	// Timeout bounds the whole check (1ms..30s). Default: 4s.
	Timeout time.Duration
	// SlowCallThreshold marks a response slower than this as failed
	// (1ms..Timeout). Default: 3s, or Timeout when that is shorter.
	SlowCallThreshold time.Duration
	// ExpectedStatus lists the statuses that count as healthy, as codes and
	// ranges such as "200-299,304". Default: "200-299".
	ExpectedStatus string
	// ConfirmInterval spaces the confirmation checks that follow a failed
	// check of a CLOSED circuit in the same invocation: up to
	// FailureThreshold-1 more checks, stopping at the first success
	// (1ms..30s). Default: 5s.
	ConfirmInterval time.Duration
	// DisableConfirmation turns the confirmation checks off: the circuit
	// then opens after FailureThreshold scheduled checks. Default: false.
	DisableConfirmation bool
	// CheckInterval makes each scheduled invocation check every interval
	// for up to 55s, instead of once (1s..30s; only with the schedule
	// rate(1 minute)). Default: one check per scheduled run.
	CheckInterval time.Duration
}

// Validate checks the fields that are set, naming each one out of range,
// one per line. The updater parses the rule input built from them again
// and has the last word.
func (h HealthCheck) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	between := func(name string, d, lo, hi time.Duration) {
		if d != 0 && (d < lo || d > hi) {
			bad("%s %s is out of range %s..%s", name, d, lo, hi)
		}
	}
	between("Timeout", h.Timeout, healthcheck.MinTimeout, healthcheck.MaxTimeout)
	between("SlowCallThreshold", h.SlowCallThreshold, healthcheck.MinTimeout, healthcheck.MaxTimeout)
	if timeout := cmp.Or(h.Timeout, healthcheck.DefaultTimeout); h.SlowCallThreshold > timeout && h.SlowCallThreshold <= healthcheck.MaxTimeout {
		bad("SlowCallThreshold %s: want at most Timeout (%s)", h.SlowCallThreshold, timeout)
	}
	if h.ExpectedStatus != "" {
		if _, err := healthcheck.ParseStatusSet(h.ExpectedStatus); err != nil {
			bad("ExpectedStatus %q: want codes and ranges such as \"200-299,304\"", h.ExpectedStatus)
		}
	}
	between("ConfirmInterval", h.ConfirmInterval, time.Millisecond, updater.MaxConfirmInterval)
	if h.DisableConfirmation && h.ConfirmInterval != 0 {
		bad("ConfirmInterval is set but DisableConfirmation is true: remove one")
	}
	between("CheckInterval", h.CheckInterval, updater.MinCheckInterval, updater.MaxCheckInterval)
	return errors.Join(errs...)
}
