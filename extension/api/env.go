package api

// Environment variables that configure the extension (and the Go client).
// The CDK construct sets them on the functions it is attached to; see
// docs/extension.md for their defaults.
const (
	EnvTable           = "CIRCUIT_BREAKER_TABLE"
	EnvServices        = "CIRCUIT_BREAKER_SERVICES"
	EnvPort            = "CIRCUIT_BREAKER_PORT"
	EnvRefreshInterval = "CIRCUIT_BREAKER_REFRESH_INTERVAL"
	EnvMaxStaleness    = "CIRCUIT_BREAKER_MAX_STALENESS"
	EnvMaxAge          = "CIRCUIT_BREAKER_MAX_AGE"
	EnvFailMode        = "CIRCUIT_BREAKER_FAIL_MODE"
	EnvMissTimeout     = "CIRCUIT_BREAKER_MISS_TIMEOUT"
	EnvMaxCircuits     = "CIRCUIT_BREAKER_MAX_CIRCUITS"
	EnvLogLevel        = "CIRCUIT_BREAKER_LOG_LEVEL"
	EnvPolicies        = "CIRCUIT_BREAKER_POLICIES"
)
