package policy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/api"
)

// Defaults of Extension.
const (
	DefaultPort            = api.DefaultPort
	DefaultRefreshInterval = time.Second
	DefaultMaxStaleness    = 30 * time.Second
	// DefaultMaxAgeFactor times the refresh interval is the default
	// maximum age: a sandbox invoked at least that often never waits,
	// since its INVOKE events keep its values younger; one idle for longer
	// waits for one read on its first lookup, which its INVOKE has already
	// started.
	DefaultMaxAgeFactor = 2
	DefaultFailMode     = FailAllow
)

// Ranges accepted by Extension.Validate.
const (
	MinPort            = 1024
	MaxPort            = 65535
	MinRefreshInterval = 10 * time.Millisecond
	MaxRefreshInterval = time.Hour
	MinMaxStaleness    = time.Second
	MaxMaxStaleness    = 24 * time.Hour
	MaxMaxAge          = 24 * time.Hour
)

// FailMode is the decision taken when the state of a circuit is unknown:
// nothing cached and DynamoDB unreachable, or reads have failed for longer
// than the maximum staleness.
type FailMode string

// The two failure policies.
const (
	FailAllow FailMode = "allow"
	FailDeny  FailMode = "deny"
)

// Allows reports whether the policy lets calls through.
func (m FailMode) Allows() bool { return m != FailDeny }

// ParseFailMode parses "allow" or "deny" (case-insensitive); the empty
// string gives the default, allow.
func ParseFailMode(v string) (FailMode, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "":
		return DefaultFailMode, nil
	case "allow":
		return FailAllow, nil
	case "deny":
		return FailDeny, nil
	}
	return "", fmt.Errorf("%q: want allow or deny", v)
}

// Extension is the extension's settings of one function, which reach it
// as environment variables: the one declaration used by the construct's
// ExtensionSettings (which writes them with Env) and by the extension
// (which reads them with ExtensionFromEnv). Zero fields keep the
// defaults; a feature is turned off by a Disable... field.
type Extension struct {
	// Port is the extension's port on 127.0.0.1 (1024..65535), set as
	// CIRCUIT_BREAKER_PORT. Default: 4243.
	Port int
	// RefreshInterval is the age after which a cached circuit is refreshed
	// in the background (10ms..1h), set as
	// CIRCUIT_BREAKER_REFRESH_INTERVAL. Default: 1s.
	RefreshInterval time.Duration
	// MaxStaleness is how long refreshes of a cached circuit may keep
	// failing, from the first failure, before FailMode applies (1s..24h,
	// and not shorter than RefreshInterval), set as
	// CIRCUIT_BREAKER_MAX_STALENESS. Default: 30s.
	MaxStaleness time.Duration
	// MaxAge is the oldest cached circuit a lookup answers from at once:
	// the first lookup after a longer pause waits (at most the miss
	// timeout) for the refresh its INVOKE already started, so a sandbox
	// that was idle never acts on an old state (RefreshInterval..24h), set
	// as CIRCUIT_BREAKER_MAX_AGE. Default: twice RefreshInterval.
	MaxAge time.Duration
	// DisableMaxAge turns the maximum age off: old values are answered at
	// once while the refresh runs (CIRCUIT_BREAKER_MAX_AGE=0). An error
	// together with MaxAge. Default: false.
	DisableMaxAge bool
	// FailMode is what callers are told when the state cannot be known:
	// "allow" or "deny", set as CIRCUIT_BREAKER_FAIL_MODE. Default: allow.
	FailMode FailMode
}

// WithDefaults fills zero fields with the defaults. MaxAge becomes the
// effective maximum: zero only when DisableMaxAge is set.
func (e Extension) WithDefaults() Extension {
	if e.Port == 0 {
		e.Port = DefaultPort
	}
	if e.RefreshInterval == 0 {
		e.RefreshInterval = DefaultRefreshInterval
	}
	if e.MaxStaleness == 0 {
		e.MaxStaleness = DefaultMaxStaleness
	}
	if e.MaxAge == 0 && !e.DisableMaxAge {
		e.MaxAge = DefaultMaxAgeFactor * e.RefreshInterval
	}
	if e.FailMode == "" {
		e.FailMode = DefaultFailMode
	}
	return e
}

// Validate checks the settings after applying the defaults, naming each
// bad field by its Go name, one per line.
func (e Extension) Validate() error {
	return e.validate(func(field string) string { return field })
}

// ValidateEnv is Validate naming each bad field by its environment
// variable.
func (e Extension) ValidateEnv() error {
	return e.validate(func(field string) string { return extensionEnv[field] })
}

// extensionEnv names the environment variable of each field.
var extensionEnv = map[string]string{
	"Port":            api.EnvPort,
	"RefreshInterval": api.EnvRefreshInterval,
	"MaxStaleness":    api.EnvMaxStaleness,
	"MaxAge":          api.EnvMaxAge,
	"DisableMaxAge":   api.EnvMaxAge + "=0",
	"FailMode":        api.EnvFailMode,
}

func (e Extension) validate(name func(field string) string) error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s "+format, append([]any{name(field)}, args...)...))
	}
	d := e.WithDefaults()
	switch {
	case e.DisableMaxAge && e.MaxAge != 0:
		bad("MaxAge", "is set but %s is true: remove one", name("DisableMaxAge"))
	case e.MaxAge < 0:
		bad("MaxAge", "%s is negative: set %s to turn the maximum off", e.MaxAge, name("DisableMaxAge"))
	case !d.DisableMaxAge && (d.MaxAge < d.RefreshInterval || d.MaxAge > MaxMaxAge):
		bad("MaxAge", "%s is out of range %s (the refresh interval)..%s", d.MaxAge, d.RefreshInterval, MaxMaxAge)
	}
	if d.Port < MinPort || d.Port > MaxPort {
		bad("Port", "%d is out of range %d..%d", d.Port, MinPort, MaxPort)
	}
	if d.RefreshInterval < MinRefreshInterval || d.RefreshInterval > MaxRefreshInterval {
		bad("RefreshInterval", "%s is out of range %s..%s", d.RefreshInterval, MinRefreshInterval, MaxRefreshInterval)
	}
	switch {
	case d.MaxStaleness < MinMaxStaleness || d.MaxStaleness > MaxMaxStaleness:
		bad("MaxStaleness", "%s is out of range %s..%s", d.MaxStaleness, MinMaxStaleness, MaxMaxStaleness)
	case d.MaxStaleness < d.RefreshInterval:
		bad("MaxStaleness", "%s: want at least the refresh interval %s", d.MaxStaleness, d.RefreshInterval)
	}
	if d.FailMode != FailAllow && d.FailMode != FailDeny {
		bad("FailMode", "%q: want %q or %q", d.FailMode, FailAllow, FailDeny)
	}
	return errors.Join(errs...)
}

// Env returns the environment variables of the fields that are set, as
// the extension reads them.
func (e Extension) Env() map[string]string {
	env := map[string]string{}
	if e.Port != 0 {
		env[api.EnvPort] = strconv.Itoa(e.Port)
	}
	if e.RefreshInterval != 0 {
		env[api.EnvRefreshInterval] = e.RefreshInterval.String()
	}
	if e.MaxStaleness != 0 {
		env[api.EnvMaxStaleness] = e.MaxStaleness.String()
	}
	switch {
	case e.DisableMaxAge:
		env[api.EnvMaxAge] = "0"
	case e.MaxAge != 0:
		env[api.EnvMaxAge] = e.MaxAge.String()
	}
	if e.FailMode != "" {
		env[api.EnvFailMode] = string(e.FailMode)
	}
	return env
}

// ExtensionFromEnv reads the settings that Env writes: unset variables
// give zero fields, and CIRCUIT_BREAKER_MAX_AGE=0 sets DisableMaxAge. It
// names every variable it cannot parse; ranges are Validate's job.
func ExtensionFromEnv(getenv func(string) string) (Extension, error) {
	var e Extension
	var errs []error
	get := func(name string) string { return strings.TrimSpace(getenv(name)) }
	if v := get(api.EnvPort); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: want an integer", api.EnvPort, v))
		}
		e.Port = n
	}
	duration := func(name string, dst *time.Duration) {
		v := get(name)
		if v == "" {
			return
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: want a Go duration such as 500ms or 2s", name, v))
			return
		}
		*dst = d
	}
	duration(api.EnvRefreshInterval, &e.RefreshInterval)
	duration(api.EnvMaxStaleness, &e.MaxStaleness)
	duration(api.EnvMaxAge, &e.MaxAge)
	if isZeroDuration(get(api.EnvMaxAge)) {
		e.DisableMaxAge = true
	}
	if v := getenv(api.EnvFailMode); v != "" {
		m, err := ParseFailMode(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%w", api.EnvFailMode, err))
		}
		e.FailMode = m
	}
	return e, errors.Join(errs...)
}

// isZeroDuration reports whether v parses as a zero duration.
func isZeroDuration(v string) bool {
	d, err := time.ParseDuration(v)
	return err == nil && d == 0
}
