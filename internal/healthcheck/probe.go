package healthcheck

import (
	"errors"
	"fmt"
	"net/url"
	"time"
)

// Probe defaults and limits.
const (
	// DefaultTimeout bounds a whole check: connection, TLS, redirects,
	// headers and the bounded body read.
	DefaultTimeout = 4 * time.Second
	// DefaultSlowCallThreshold is the latency above which a check that
	// otherwise succeeded counts as failed.
	DefaultSlowCallThreshold = 3 * time.Second
	// MinTimeout and MaxTimeout bound Timeout and SlowCallThreshold.
	MinTimeout = time.Millisecond
	MaxTimeout = 30 * time.Second
	// MaxURLLength bounds the health URL.
	MaxURLLength = 2048
)

// Probe says what to check and how to judge it.
type Probe struct {
	// URL is the absolute http or https URL to GET.
	URL string
	// Timeout bounds the whole check (1ms..30s, default 4s).
	Timeout time.Duration
	// SlowCallThreshold fails a check slower than this (1ms..Timeout,
	// default 3s, or Timeout when Timeout is shorter than 3s, which leaves
	// only the timeout to fail slow calls).
	SlowCallThreshold time.Duration
	// ExpectedStatus is the set of statuses that count as healthy
	// (default 200-299).
	ExpectedStatus StatusSet
}

// WithDefaults returns p with every zero field replaced by its default.
func (p Probe) WithDefaults() Probe {
	if p.Timeout == 0 {
		p.Timeout = DefaultTimeout
	}
	if p.SlowCallThreshold == 0 {
		p.SlowCallThreshold = min(DefaultSlowCallThreshold, p.Timeout)
	}
	if p.ExpectedStatus.IsZero() {
		p.ExpectedStatus = MustParseStatusSet(DefaultExpectedStatus)
	}
	return p
}

// Validate checks the URL and the time limits of p; call WithDefaults
// first when zero fields mean "default".
func (p Probe) Validate() error {
	var errs []error
	if err := ValidateURL(p.URL); err != nil {
		errs = append(errs, err)
	}
	if p.Timeout < MinTimeout || p.Timeout > MaxTimeout {
		errs = append(errs, fmt.Errorf("Timeout %s is out of range %s..%s", p.Timeout, MinTimeout, MaxTimeout))
	}
	if p.SlowCallThreshold < MinTimeout || p.SlowCallThreshold > p.Timeout {
		errs = append(errs, fmt.Errorf("SlowCallThreshold %s is out of range %s..Timeout (%s)", p.SlowCallThreshold, MinTimeout, p.Timeout))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("healthcheck: invalid probe: %w", err)
	}
	return nil
}

// ValidateURL checks that raw is an absolute http or https URL with a host
// and without credentials, at most MaxURLLength bytes long.
func ValidateURL(raw string) error {
	if raw == "" {
		return errors.New("URL is empty")
	}
	if len(raw) > MaxURLLength {
		return fmt.Errorf("URL is longer than %d bytes", MaxURLLength)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("URL %q is malformed: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("URL %q: scheme %q is not http or https", raw, u.Scheme)
	}
	if u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("URL %q has no host", raw)
	}
	if u.User != nil {
		return fmt.Errorf("URL %q carries credentials; use a URL without user info", u.Redacted())
	}
	return nil
}
