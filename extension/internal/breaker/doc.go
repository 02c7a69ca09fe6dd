// Package breaker makes the extension's decisions. It answers lookups from
// what the cache holds (package cache, a read-through store that decides
// nothing), applying the failure policy when that has expired; it counts
// the outcomes of real calls, flushes them to the table, trips circuits on
// the fleet-wide failure or slow-call rate, ends cool-downs when callers
// ask, and hands out the fleet-wide probe leases of HALF_OPEN circuits.
//
// Every change of a circuit goes through store.Apply, the same conditional
// read-decide-write loop as the health-check updater's, so the two never
// overwrite each other. The breaker runs no timer of its own: the sandbox
// is frozen between invocations. Outcomes are flushed when the extension
// calls Flush, on INVOKE (while the function runs) or, in a sandbox that
// gets no INVOKE event (Lambda Managed Instances, which is never frozen),
// on the extension's timer, and at SHUTDOWN (FlushAll); probe outcomes are
// applied while the caller waits for the answer to its report.
package breaker
