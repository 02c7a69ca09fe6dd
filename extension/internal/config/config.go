// Package config reads the extension's configuration from environment
// variables and validates it.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/api"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/policy"
)

// Environment variable names (defined in package api). The construct sets
// them on the function.
const (
	EnvTable           = api.EnvTable
	EnvServices        = api.EnvServices
	EnvPort            = api.EnvPort
	EnvRefreshInterval = api.EnvRefreshInterval
	EnvMaxStaleness    = api.EnvMaxStaleness
	EnvMaxAge          = api.EnvMaxAge
	EnvFailMode        = api.EnvFailMode
	EnvMissTimeout     = api.EnvMissTimeout
	EnvMaxCircuits     = api.EnvMaxCircuits
	EnvLogLevel        = api.EnvLogLevel
	// EnvPolicies holds the per-service policies as JSON (policy.Policies).
	EnvPolicies = api.EnvPolicies
	// EnvToken is the first environment variable whose value callers must
	// send in the X-Circuit-Breaker-Token header; see api.Token for the
	// whole rule.
	EnvToken = api.EnvSessionToken
	// EnvFunctionName is set by Lambda in every execution environment; its
	// presence tells a real sandbox from a local run.
	EnvFunctionName = "AWS_LAMBDA_FUNCTION_NAME"
)

// Defaults.
const (
	DefaultPort            = 4243
	DefaultRefreshInterval = time.Second
	DefaultMaxStaleness    = 30 * time.Second
	// DefaultMaxAgeFactor times the refresh interval is the maximum age
	// when CIRCUIT_BREAKER_MAX_AGE is unset: a sandbox invoked at least
	// that often never waits, since its INVOKE events keep its values
	// younger; one idle for longer waits for one read on its first
	// lookup, which its INVOKE has already started.
	DefaultMaxAgeFactor = 2
	DefaultMissTimeout  = 100 * time.Millisecond
	DefaultMaxCircuits  = 1000
	DefaultFailMode     = FailAllow
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
	return "", fmt.Errorf("%s=%q: want allow or deny", EnvFailMode, v)
}

// Allows reports whether the policy lets calls through.
func (m FailMode) Allows() bool { return m != FailDeny }

// Config is the validated configuration.
type Config struct {
	Table    string
	Services []string
	// Port is the loopback port; 0 picks a free one (tests).
	Port            int
	RefreshInterval time.Duration
	MaxStaleness    time.Duration
	// MaxAge is the oldest cached value a lookup answers from without
	// waiting for the refresh; 0 turns the maximum off.
	MaxAge      time.Duration
	FailMode    FailMode
	MissTimeout time.Duration
	MaxCircuits int
	LogLevel    slog.Level
	// Policies are the per-service breaker policies; services without an
	// entry get the defaults.
	Policies policy.Policies
	// Token is the expected X-Circuit-Breaker-Token (api.Token); empty
	// disables the check (a local run: neither AWS_SESSION_TOKEN nor
	// AWS_CONTAINER_AUTHORIZATION_TOKEN is set).
	Token string
}

// Load reads the configuration through getenv (os.Getenv in production).
// It returns every problem found, joined, so one failed init names them all.
func Load(getenv func(string) string) (Config, error) {
	c := Config{
		Table: strings.TrimSpace(getenv(EnvTable)),
		Token: api.Token(getenv),
	}
	var errs []error
	if c.Table == "" {
		errs = append(errs, fmt.Errorf("%s is required: the name of the circuit state table", EnvTable))
	}
	if c.Token == "" && InsideLambda(getenv) {
		// Lambda gives every sandbox one of the two: without either, the
		// check would be off and any local process could forge requests.
		errs = append(errs, fmt.Errorf("neither %s nor %s is set inside Lambda (%s is set): the local API would accept forged requests", api.EnvSessionToken, api.EnvContainerAuthToken, EnvFunctionName))
	}
	var err error
	if c.Port, err = parseInt(getenv, EnvPort, DefaultPort, 0, 65535); err != nil {
		errs = append(errs, err)
	}
	if c.MaxCircuits, err = parseInt(getenv, EnvMaxCircuits, DefaultMaxCircuits, 1, 1_000_000); err != nil {
		errs = append(errs, err)
	}
	if c.RefreshInterval, err = parseDuration(getenv, EnvRefreshInterval, DefaultRefreshInterval, time.Millisecond); err != nil {
		errs = append(errs, err)
	}
	if c.MaxStaleness, err = parseDuration(getenv, EnvMaxStaleness, DefaultMaxStaleness, time.Millisecond); err != nil {
		errs = append(errs, err)
	}
	if c.MaxAge, err = parseDuration(getenv, EnvMaxAge, -1, 0); err != nil {
		errs = append(errs, err)
	}
	switch {
	case c.MaxAge < 0 || err != nil:
		c.MaxAge = DefaultMaxAgeFactor * c.RefreshInterval
	case c.MaxAge > 0 && c.RefreshInterval > 0 && c.MaxAge < c.RefreshInterval:
		errs = append(errs, fmt.Errorf("%s (%s) must be 0 (no maximum) or at least %s (%s)", EnvMaxAge, c.MaxAge, EnvRefreshInterval, c.RefreshInterval))
	}
	if c.MissTimeout, err = parseDuration(getenv, EnvMissTimeout, DefaultMissTimeout, time.Millisecond); err != nil {
		errs = append(errs, err)
	}
	if err == nil && c.MissTimeout > 10*time.Second {
		errs = append(errs, fmt.Errorf("%s=%s: at most 10s", EnvMissTimeout, c.MissTimeout))
	}
	if c.FailMode, err = ParseFailMode(getenv(EnvFailMode)); err != nil {
		errs = append(errs, err)
	}
	if c.LogLevel, err = ParseLogLevel(getenv(EnvLogLevel)); err != nil {
		errs = append(errs, err)
	}
	if c.MaxStaleness > 0 && c.RefreshInterval > 0 && c.MaxStaleness < c.RefreshInterval {
		errs = append(errs, fmt.Errorf("%s (%s) must not be shorter than %s (%s)", EnvMaxStaleness, c.MaxStaleness, EnvRefreshInterval, c.RefreshInterval))
	}
	if c.Policies, err = policy.Parse(getenv(EnvPolicies)); err != nil {
		errs = append(errs, err)
	}
	if c.Services, err = ParseServices(getenv(EnvServices)); err != nil {
		errs = append(errs, err)
	}
	if c.MaxCircuits > 0 && len(c.Services) > c.MaxCircuits {
		errs = append(errs, fmt.Errorf("%s lists %d circuits, more than %s=%d", EnvServices, len(c.Services), EnvMaxCircuits, c.MaxCircuits))
	}
	if len(errs) > 0 {
		return Config{}, fmt.Errorf("invalid configuration: %w", errors.Join(errs...))
	}
	return c, nil
}

// InsideLambda reports whether the process runs in a Lambda execution
// environment rather than a local run: Lambda sets AWS_LAMBDA_FUNCTION_NAME
// in every one, whatever its execution model.
func InsideLambda(getenv func(string) string) bool { return getenv(EnvFunctionName) != "" }

// ParseServices splits a comma-separated list of service IDs, trimming
// spaces, dropping empty items and duplicates, and validating each ID.
func ParseServices(v string) ([]string, error) {
	var ids []string
	seen := map[string]bool{}
	for _, id := range strings.Split(v, ",") {
		id = strings.TrimSpace(id)
		if id == "" || seen[id] {
			continue
		}
		if err := circuit.ValidateID(id); err != nil {
			return nil, fmt.Errorf("%s: %w", EnvServices, err)
		}
		seen[id] = true
		ids = append(ids, id)
	}
	return ids, nil
}

// ParseLogLevel parses debug, info, warn or error (case-insensitive); the
// empty string gives info.
func ParseLogLevel(v string) (slog.Level, error) {
	if strings.TrimSpace(v) == "" {
		return slog.LevelInfo, nil
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.TrimSpace(v))); err != nil {
		return slog.LevelInfo, fmt.Errorf("%s=%q: want debug, info, warn or error", EnvLogLevel, v)
	}
	return l, nil
}

func parseInt(getenv func(string) string, name string, def, lo, hi int) (int, error) {
	v := strings.TrimSpace(getenv(name))
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return def, fmt.Errorf("%s=%q: want an integer from %d to %d", name, v, lo, hi)
	}
	return n, nil
}

func parseDuration(getenv func(string) string, name string, def, lo time.Duration) (time.Duration, error) {
	v := strings.TrimSpace(getenv(name))
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < lo {
		return def, fmt.Errorf("%s=%q: want a Go duration of at least %s, such as 500ms or 2s", name, v, lo)
	}
	return d, nil
}
