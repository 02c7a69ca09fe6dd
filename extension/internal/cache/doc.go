// Package cache keeps the circuits a function asks about in memory and
// decides whether a call is allowed, without making lookups wait on
// DynamoDB.
//
// Rules:
//
//   - Circuits listed at start are read with one batched read (Prefetch).
//   - A cached value older than the refresh interval is re-read in the
//     background; the re-read is started by a lookup or by an INVOKE event
//     (RefreshDue), since the sandbox is frozen between invocations and a
//     timer would not fire. At most one read per circuit is in flight.
//   - A lookup answers from the cache at once. Only the first lookup of a
//     circuit with no value waits for the read, at most the miss timeout.
//   - When a read fails the last value is served marked stale. With no
//     value, or a value older than the maximum staleness whose refresh
//     failed, the failure policy decides.
//   - At most MaxCircuits circuits are kept; the least recently used one
//     is evicted.
//
// The final allow decision for a known state goes through an Admitter:
// the extension's breaker, which hands out the fleet-wide probe leases of
// HALF_OPEN circuits and ends cool-downs (package breaker).
package cache
