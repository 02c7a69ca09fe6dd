package healthcheck

import (
	"fmt"
	"strconv"
	"strings"
)

// StatusSet is a set of HTTP status codes, written as a comma-separated
// list of codes and inclusive ranges such as "200-299,304".
type StatusSet struct {
	ranges []statusRange
}

type statusRange struct{ lo, hi int }

// DefaultExpectedStatus is the status set used when none is given.
const DefaultExpectedStatus = "200-299"

// Status codes outside 100..599 are refused by ParseStatusSet.
const (
	minStatus = 100
	maxStatus = 599
)

// maxStatusItems bounds the number of items in a status list.
const maxStatusItems = 32

// ParseStatusSet parses a comma-separated list of status codes and
// inclusive ranges, such as "200-299,304". Codes must be within 100..599;
// spaces around items are allowed; an empty list is an error.
func ParseStatusSet(v string) (StatusSet, error) {
	if strings.TrimSpace(v) == "" {
		return StatusSet{}, fmt.Errorf("healthcheck: empty status list")
	}
	items := strings.Split(v, ",")
	if len(items) > maxStatusItems {
		return StatusSet{}, fmt.Errorf("healthcheck: status list %q has more than %d items", v, maxStatusItems)
	}
	var s StatusSet
	for _, item := range items {
		item = strings.TrimSpace(item)
		lo, hi, isRange := strings.Cut(item, "-")
		a, err := parseStatus(lo)
		if err != nil {
			return StatusSet{}, fmt.Errorf("healthcheck: status list %q: %w", v, err)
		}
		b := a
		if isRange {
			if b, err = parseStatus(hi); err != nil {
				return StatusSet{}, fmt.Errorf("healthcheck: status list %q: %w", v, err)
			}
			if b < a {
				return StatusSet{}, fmt.Errorf("healthcheck: status list %q: range %q is backwards", v, item)
			}
		}
		s.ranges = append(s.ranges, statusRange{a, b})
	}
	return s, nil
}

func parseStatus(v string) (int, error) {
	v = strings.TrimSpace(v)
	if len(v) != 3 {
		return 0, fmt.Errorf("%q is not a three-digit status code", v)
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < minStatus || n > maxStatus {
		return 0, fmt.Errorf("%q is not a status code in %d..%d", v, minStatus, maxStatus)
	}
	return n, nil
}

// MustParseStatusSet is ParseStatusSet for constants; it panics on error.
func MustParseStatusSet(v string) StatusSet {
	s, err := ParseStatusSet(v)
	if err != nil {
		panic(err)
	}
	return s
}

// Contains reports whether code is in the set. The zero StatusSet
// contains 200..299.
func (s StatusSet) Contains(code int) bool {
	if len(s.ranges) == 0 {
		return code >= 200 && code <= 299
	}
	for _, r := range s.ranges {
		if code >= r.lo && code <= r.hi {
			return true
		}
	}
	return false
}

// IsZero reports whether s is the zero value (read as 200..299).
func (s StatusSet) IsZero() bool { return len(s.ranges) == 0 }

// String writes the set in the form ParseStatusSet reads.
func (s StatusSet) String() string {
	if len(s.ranges) == 0 {
		return DefaultExpectedStatus
	}
	parts := make([]string, len(s.ranges))
	for i, r := range s.ranges {
		if r.lo == r.hi {
			parts[i] = strconv.Itoa(r.lo)
		} else {
			parts[i] = fmt.Sprintf("%d-%d", r.lo, r.hi)
		}
	}
	return strings.Join(parts, ",")
}
