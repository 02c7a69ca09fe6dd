package updater

// EnvAllowLocalTargets, set to "true" on the updater function, lets its
// checks connect to loopback, link-local and instance-metadata addresses,
// which they refuse by default (see healthcheck.AllowLocalTargets). It is
// a setting of the function, not of its input, so that whoever may invoke
// the updater cannot turn it on. The local stack and the tests, which run
// on 127.0.0.1, set it.
const EnvAllowLocalTargets = "CIRCUIT_BREAKER_ALLOW_LOCAL_TARGETS"
