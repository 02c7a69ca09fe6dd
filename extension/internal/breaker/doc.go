// Package breaker makes the extension's decisions. It answers lookups from
// what the cache holds (package cache, a read-through store that decides
// nothing), applying the failure policy when that has expired; it counts
// the outcomes of real calls, flushes them to the table, trips circuits on
// the fleet-wide failure or slow-call rate, ends cool-downs when callers
// ask, and hands out the fleet-wide probe leases of HALF_OPEN circuits.
//
// Every change of a circuit goes through store.Apply, the same conditional
// read-decide-write loop as the health-check updater's, so the two never
// overwrite each other. Nothing runs on a timer: the sandbox is frozen
// between invocations. Outcomes are flushed on INVOKE (while the function
// runs) and at SHUTDOWN; probe outcomes are applied while the caller waits
// for the answer to its report.
package breaker
