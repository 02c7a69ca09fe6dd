package circuit

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxOverrideReasonLength bounds an override's reason.
const MaxOverrideReasonLength = 512

// Valid reports whether o is FORCED_OPEN or FORCED_CLOSED.
func (o Override) Valid() bool {
	return o == ForcedOpen || o == ForcedClosed
}

// ParseOverride converts a string into an Override, failing on anything
// but FORCED_OPEN and FORCED_CLOSED.
func ParseOverride(v string) (Override, error) {
	o := Override(v)
	if !o.Valid() {
		return NoOverride, fmt.Errorf("circuit: unknown override %q (want FORCED_OPEN or FORCED_CLOSED)", v)
	}
	return o, nil
}

// ValidateOverride checks an operator override before it is stored: a
// known override, a non-empty reason of at most 512 bytes of valid
// UTF-8 without control characters, and an
// expiry that is either zero (never expires) or after now.
func ValidateOverride(o Override, reason string, until, now time.Time) error {
	if !o.Valid() {
		return fmt.Errorf("circuit: unknown override %q (want FORCED_OPEN or FORCED_CLOSED)", o)
	}
	if strings.TrimSpace(reason) == "" {
		return fmt.Errorf("circuit: override %s needs a reason", o)
	}
	if len(reason) > MaxOverrideReasonLength {
		return fmt.Errorf("circuit: override reason is longer than %d bytes", MaxOverrideReasonLength)
	}
	if strings.IndexFunc(reason, unicode.IsControl) >= 0 || !utf8.ValidString(reason) {
		return fmt.Errorf("circuit: override reason may hold no control characters and must be valid UTF-8")
	}
	if !until.IsZero() && !until.After(now) {
		return fmt.Errorf("circuit: override expiry %s is not in the future", until.UTC().Format(time.RFC3339))
	}
	return nil
}
