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

// Settings are the breaker rules of one monitored service. The zero value
// means "all defaults"; use WithDefaults to fill zero fields and Validate
// to check ranges.
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

// Validate checks that every field is in range. It does not apply
// defaults: call WithDefaults first when zero fields mean "default".
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
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("circuit: invalid settings: %w", err)
	}
	return nil
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
