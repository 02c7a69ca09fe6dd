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

// Defaults of the settings that only the extension reads; those of
// policy.Extension are declared there.
const (
	DefaultMissTimeout = 100 * time.Millisecond
	DefaultMaxCircuits = 1000
)

// FailMode is policy.FailMode, the decision taken when the state of a
// circuit is unknown.
type FailMode = policy.FailMode

// The two failure policies.
const (
	FailAllow = policy.FailAllow
	FailDeny  = policy.FailDeny
)

// Config is the validated configuration.
type Config struct {
	Table    string
	Services []string
	// Extension holds the settings the construct sets, defaults applied:
	// Port (0 when CIRCUIT_BREAKER_PORT is 0: a free one, for tests),
	// RefreshInterval, MaxStaleness, MaxAge (0 when the maximum is
	// off) and FailMode.
	policy.Extension
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
	ext, err := policy.ExtensionFromEnv(getenv)
	if err != nil {
		errs = append(errs, err)
	}
	if err == nil {
		if err := ext.ValidateEnv(); err != nil {
			errs = append(errs, err)
		}
	}
	c.Extension = ext.WithDefaults()
	if strings.TrimSpace(getenv(EnvPort)) == "0" {
		c.Port = 0 // a free port, for tests: the zero Port of policy.Extension means the default
	}
	if c.MaxCircuits, err = parseInt(getenv, EnvMaxCircuits, DefaultMaxCircuits, 1, 1_000_000); err != nil {
		errs = append(errs, err)
	}
	if c.MissTimeout, err = parseDuration(getenv, EnvMissTimeout, DefaultMissTimeout, time.Millisecond); err != nil {
		errs = append(errs, err)
	}
	if err == nil && c.MissTimeout > 10*time.Second {
		errs = append(errs, fmt.Errorf("%s=%s: at most 10s", EnvMissTimeout, c.MissTimeout))
	}
	if c.LogLevel, err = ParseLogLevel(getenv(EnvLogLevel)); err != nil {
		errs = append(errs, err)
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
