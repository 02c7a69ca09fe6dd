package circuit

import (
	"cmp"
	"errors"
	"fmt"
	"time"
)

// Default settings, used for every zero field of Settings.
const (
	// DefaultFailureThreshold is how many consecutive failed checks open a
	// CLOSED circuit.
	DefaultFailureThreshold = 3
	// DefaultSuccessThreshold is how many consecutive successful checks
	// close a HALF_OPEN circuit, counting the trial that half-opened it.
	DefaultSuccessThreshold = 2
	// DefaultOpenCooldown is how long a circuit stays OPEN after its first
	// opening before a check may try the service again.
	DefaultOpenCooldown = 30 * time.Second
	// DefaultMaxOpenCooldown caps the cool-down, which doubles with every
	// opening that is not followed by a full recovery.
	DefaultMaxOpenCooldown = 5 * time.Minute
)

// Ranges accepted by Settings.Validate.
const (
	MinThreshold    = 1
	MaxThreshold    = 100
	MinOpenCooldown = time.Second
	MaxOpenCooldown = 24 * time.Hour
)

// Settings are the breaker rules of one monitored service, shared by the
// updater's health checks and the extension's passive detection. Each
// setting of a service is declared once, in Settings or RateSettings: the
// construct's props, the extension's policy and the app's services.json
// all use these two types. The zero value means "all defaults"; use
// WithDefaults to fill zero fields and Validate to check ranges.
type Settings struct {
	// FailureThreshold is how many consecutive failed checks move CLOSED to
	// OPEN (1..100, default 3).
	FailureThreshold int
	// SuccessThreshold is how many consecutive successful checks move a
	// circuit that is being tried back to CLOSED (1..100, default 2). The
	// first trial after the cool-down counts: with 2, the trial that moves
	// OPEN to HALF_OPEN plus one more success close the circuit; with 1,
	// the trial closes it at once.
	SuccessThreshold int
	// OpenCooldown is how long the first opening lasts before a check may
	// try the service again (1s..24h, default 30s, or MaxOpenCooldown when
	// that is shorter).
	OpenCooldown time.Duration
	// MaxOpenCooldown caps the cool-down, which doubles with each opening
	// since the last full recovery (OpenCooldown..24h, default 5m).
	MaxOpenCooldown time.Duration
}

// DefaultSettings returns the settings used when none are given.
func DefaultSettings() Settings {
	return Settings{
		FailureThreshold: DefaultFailureThreshold,
		SuccessThreshold: DefaultSuccessThreshold,
		OpenCooldown:     DefaultOpenCooldown,
		MaxOpenCooldown:  DefaultMaxOpenCooldown,
	}
}

// WithDefaults returns s with every zero field replaced by its default.
// A zero MaxOpenCooldown becomes the larger of the default cap and
// OpenCooldown, and a zero OpenCooldown the smaller of the default and
// MaxOpenCooldown, so that either one set alone is a valid setting.
func (s Settings) WithDefaults() Settings {
	s.FailureThreshold = cmp.Or(s.FailureThreshold, DefaultFailureThreshold)
	s.SuccessThreshold = cmp.Or(s.SuccessThreshold, DefaultSuccessThreshold)
	if s.OpenCooldown == 0 {
		s.OpenCooldown = DefaultOpenCooldown
		if s.MaxOpenCooldown > 0 && s.MaxOpenCooldown < s.OpenCooldown {
			s.OpenCooldown = s.MaxOpenCooldown
		}
	}
	if s.MaxOpenCooldown == 0 {
		s.MaxOpenCooldown = max(DefaultMaxOpenCooldown, s.OpenCooldown)
	}
	return s
}

// Validate checks that every field is in range, naming each one that is
// not, one per line. It does not apply defaults: call WithDefaults first
// when zero fields mean "default".
func (s Settings) Validate() error {
	var errs []error
	if s.FailureThreshold < MinThreshold || s.FailureThreshold > MaxThreshold {
		errs = append(errs, fmt.Errorf("FailureThreshold %d is out of range %d..%d", s.FailureThreshold, MinThreshold, MaxThreshold))
	}
	if s.SuccessThreshold < MinThreshold || s.SuccessThreshold > MaxThreshold {
		errs = append(errs, fmt.Errorf("SuccessThreshold %d is out of range %d..%d", s.SuccessThreshold, MinThreshold, MaxThreshold))
	}
	if s.OpenCooldown < MinOpenCooldown || s.OpenCooldown > MaxOpenCooldown {
		errs = append(errs, fmt.Errorf("OpenCooldown %s is out of range %s..%s", s.OpenCooldown, MinOpenCooldown, MaxOpenCooldown))
	}
	if s.MaxOpenCooldown < s.OpenCooldown || s.MaxOpenCooldown > MaxOpenCooldown {
		errs = append(errs, fmt.Errorf("MaxOpenCooldown %s is out of range OpenCooldown (%s)..%s", s.MaxOpenCooldown, s.OpenCooldown, MaxOpenCooldown))
	}
	return errors.Join(errs...)
}

// Cooldown is how long the openCount-th opening since the last full
// recovery lasts: OpenCooldown doubled for every earlier opening, capped at
// MaxOpenCooldown. openCount values below 1 count as 1.
func (s Settings) Cooldown(openCount int) time.Duration {
	d := s.OpenCooldown
	if d <= 0 {
		return 0
	}
	for i := 1; i < openCount && d < s.MaxOpenCooldown; i++ {
		d *= 2
	}
	return min(d, s.MaxOpenCooldown)
}

// BucketSize is the length of one counter bucket of call outcomes: the
// window of the rates is a whole number of buckets.
const BucketSize = 5 * time.Second

// Defaults of passive detection, used for every zero field of
// RateSettings.
const (
	DefaultFailureRateThreshold  = 50.0
	DefaultMinimumCalls          = 10
	DefaultWindow                = 30 * time.Second
	DefaultSlowCallRateThreshold = 100.0
	DefaultSlowCallDuration      = 3 * time.Second
	DefaultFastTripFailures      = 10
	DefaultHalfOpenProbes        = 1
	DefaultProbeTimeout          = 10 * time.Second
)

// Ranges accepted by RateSettings.Validate.
const (
	MinRate             = 1.0
	MaxRate             = 100.0
	MaxMinimumCalls     = 100000
	MinWindow           = 5 * time.Second
	MaxWindow           = 5 * time.Minute
	MinSlowCallDuration = time.Millisecond
	MaxSlowCallDuration = 5 * time.Minute
	MaxFastTripFailures = 1000
	MaxHalfOpenProbes   = 10
	MinProbeTimeout     = time.Second
	MaxProbeTimeout     = 15 * time.Minute
	MaxRecoveryRamp     = 10 * time.Minute
)

// RateSettings tune passive detection: how the outcomes of real calls,
// aggregated across every execution environment, open a CLOSED circuit,
// and how many trial calls a HALF_OPEN circuit lets through. The zero
// value means "all defaults"; use WithDefaults to fill zero fields and
// Validate to check ranges.
type RateSettings struct {
	// FailureRateThreshold is the failure rate of real calls, in percent
	// (1..100), at or above which a CLOSED circuit opens. Default: 50.
	FailureRateThreshold float64
	// MinimumCalls is the fewest calls in the window for either rate to
	// count (1..100000). Default: 10.
	MinimumCalls int
	// Window is the sliding window of the rates (5s..5m, a whole multiple
	// of the 5 s BucketSize). Default: 30s.
	Window time.Duration
	// SlowCallRateThreshold is the slow-call rate, in percent (1..100), at
	// or above which a CLOSED circuit opens. Default: 100.
	SlowCallRateThreshold float64
	// SlowCallDuration is the latency from which a call counts as slow
	// (1ms..5m). Default: 3s.
	SlowCallDuration time.Duration
	// FastTripFailures is the number of consecutive failed calls, seen by
	// one execution environment, after which that environment refuses a
	// CLOSED circuit at once on its own, and which count as one run
	// towards the fleet-wide trip (see DecideRate) (1..1000). Default: 10.
	FastTripFailures int
	// HalfOpenProbes is the most concurrent trial calls across the fleet
	// while HALF_OPEN (1..10). Default: 1.
	HalfOpenProbes int
	// ProbeTimeout is how long a probe lease lasts (1s..15m): a probe
	// call's outcome must be reported within it, and a lease whose outcome
	// never comes frees its slot after it. Set it to at least the timeout
	// of the calls to the service. Default: 10s.
	ProbeTimeout time.Duration
	// RecoveryRamp, when set, spreads the return of the fleet's calls
	// after a HALF_OPEN circuit closes: during the ramp a lookup is
	// allowed with a probability that rises linearly from 10 % to 100 %,
	// so that thousands of environments do not all resume at once on a
	// service that just recovered (0..10m). Default: 0, off: every call
	// resumes as soon as the close is read.
	RecoveryRamp time.Duration
}

// WithDefaults fills zero fields with the defaults.
func (r RateSettings) WithDefaults() RateSettings {
	r.FailureRateThreshold = cmp.Or(r.FailureRateThreshold, DefaultFailureRateThreshold)
	r.MinimumCalls = cmp.Or(r.MinimumCalls, DefaultMinimumCalls)
	r.Window = cmp.Or(r.Window, DefaultWindow)
	r.SlowCallRateThreshold = cmp.Or(r.SlowCallRateThreshold, DefaultSlowCallRateThreshold)
	r.SlowCallDuration = cmp.Or(r.SlowCallDuration, DefaultSlowCallDuration)
	r.FastTripFailures = cmp.Or(r.FastTripFailures, DefaultFastTripFailures)
	r.HalfOpenProbes = cmp.Or(r.HalfOpenProbes, DefaultHalfOpenProbes)
	r.ProbeTimeout = cmp.Or(r.ProbeTimeout, DefaultProbeTimeout)
	return r
}

// Validate checks that every field is in range, naming each one that is
// not, one per line. It does not apply defaults: call WithDefaults first
// when zero fields mean "default".
func (r RateSettings) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if r.FailureRateThreshold < MinRate || r.FailureRateThreshold > MaxRate {
		bad("FailureRateThreshold %g is out of range %g..%g (percent)", r.FailureRateThreshold, MinRate, MaxRate)
	}
	if r.MinimumCalls < 1 || r.MinimumCalls > MaxMinimumCalls {
		bad("MinimumCalls %d is out of range 1..%d", r.MinimumCalls, MaxMinimumCalls)
	}
	if r.Window < MinWindow || r.Window > MaxWindow || r.Window%BucketSize != 0 {
		bad("Window %s is out of range %s..%s in steps of %s", r.Window, MinWindow, MaxWindow, BucketSize)
	}
	if r.SlowCallRateThreshold < MinRate || r.SlowCallRateThreshold > MaxRate {
		bad("SlowCallRateThreshold %g is out of range %g..%g (percent)", r.SlowCallRateThreshold, MinRate, MaxRate)
	}
	if r.SlowCallDuration < MinSlowCallDuration || r.SlowCallDuration > MaxSlowCallDuration {
		bad("SlowCallDuration %s is out of range %s..%s", r.SlowCallDuration, MinSlowCallDuration, MaxSlowCallDuration)
	}
	if r.FastTripFailures < 1 || r.FastTripFailures > MaxFastTripFailures {
		bad("FastTripFailures %d is out of range 1..%d", r.FastTripFailures, MaxFastTripFailures)
	}
	if r.HalfOpenProbes < 1 || r.HalfOpenProbes > MaxHalfOpenProbes {
		bad("HalfOpenProbes %d is out of range 1..%d", r.HalfOpenProbes, MaxHalfOpenProbes)
	}
	if r.ProbeTimeout < MinProbeTimeout || r.ProbeTimeout > MaxProbeTimeout {
		bad("ProbeTimeout %s is out of range %s..%s", r.ProbeTimeout, MinProbeTimeout, MaxProbeTimeout)
	}
	if r.RecoveryRamp < 0 || r.RecoveryRamp > MaxRecoveryRamp {
		bad("RecoveryRamp %s is out of range 0s..%s", r.RecoveryRamp, MaxRecoveryRamp)
	}
	return errors.Join(errs...)
}

// rampFloor is the share of calls allowed as a recovery ramp begins.
const rampFloor = 0.1

// RampShare returns the share of calls, 0..1, that circuit c allows at now
// under a recovery ramp of length ramp: 1 unless c closed from HALF_OPEN
// less than ramp ago; then rising linearly from 10 % at the close to 100 %
// at its end.
func RampShare(c Circuit, ramp time.Duration, now time.Time) float64 {
	if ramp <= 0 || c.State != Closed || c.PreviousState != HalfOpen || c.UpdatedAt.IsZero() {
		return 1
	}
	since := now.Sub(c.UpdatedAt)
	if since >= ramp {
		return 1
	}
	return max(rampFloor, rampFloor+(1-rampFloor)*float64(since)/float64(ramp))
}
