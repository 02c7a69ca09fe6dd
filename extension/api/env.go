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

// Environment variables that carry the secret of the local API's
// X-Circuit-Breaker-Token check (see Token).
const (
	// EnvSessionToken is the session token Lambda gives every process of
	// an execution environment that runs with static role credentials.
	EnvSessionToken = "AWS_SESSION_TOKEN"
	// EnvContainerAuthToken is the token of the container credentials
	// endpoint, given instead of static credentials where Lambda serves
	// them from an endpoint (SnapStart restores, Managed Instances).
	EnvContainerAuthToken = "AWS_CONTAINER_AUTHORIZATION_TOKEN"
)

// Token returns the secret that every request to the local API must carry
// in HeaderToken, read through getenv (os.Getenv in production): the value
// of AWS_SESSION_TOKEN when it is set, otherwise that of
// AWS_CONTAINER_AUTHORIZATION_TOKEN. Every process of an execution
// environment has the same environment, so the extension and the clients
// agree on it without configuration, while a request forged through the
// function (SSRF) cannot carry it. Empty means neither is set: a local run
// outside Lambda, where the check is off.
func Token(getenv func(string) string) string {
	if t := getenv(EnvSessionToken); t != "" {
		return t
	}
	return getenv(EnvContainerAuthToken)
}
