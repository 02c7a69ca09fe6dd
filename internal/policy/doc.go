// Package policy is the per-service breaker policy that reaches the
// extension through the CIRCUIT_BREAKER_POLICIES environment variable: a
// JSON object keyed by service ID. The construct marshals Policies; the
// extension parses and validates them at init.
//
//	{"payments":{"failureRateThreshold":50,"minimumCalls":10,"window":"30s",
//	  "slowCallRateThreshold":100,"slowCallDuration":"3s","halfOpenProbes":1,
//	  "successThreshold":2,"failureThreshold":3,"openCooldown":"30s","maxOpenCooldown":"5m"}}
//
// Every field is optional; an absent service or field takes the defaults.
package policy
