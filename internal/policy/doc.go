// Package policy is the per-service breaker policy that reaches the
// extension through the CIRCUIT_BREAKER_POLICIES environment variable: a
// JSON object keyed by service ID. The construct marshals Policies; the
// extension parses and validates them at init.
//
//	{"payments":{"failureRateThreshold":50,"minimumCalls":10,"window":"30s",
//	  "slowCallRateThreshold":100,"slowCallDuration":"3s","halfOpenProbes":1,
//	  "failureThreshold":3,"successThreshold":2,"openCooldown":"30s","maxOpenCooldown":"5m"}}
//
// Every field is optional; an absent service or field takes the defaults.
// A Policy holds the two groups of settings declared in package circuit;
// MarshalFlat and UnmarshalFlat give those groups, and every struct that
// holds them (such as the app's services.json), one JSON form.
package policy
