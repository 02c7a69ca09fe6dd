// Package cache keeps the circuits a function asks about in memory, read
// through from DynamoDB: it stores values and says how old and how stale
// they are, waiting on the table only when a value is missing or too old.
// It makes no decision: the breaker decides from what it returns.
//
// Rules:
//
//   - Circuits listed at start are read with one batched read (Prefetch).
//   - A cached value older than the refresh interval is re-read in the
//     background; the re-read is started by a Get or by RefreshDue, which
//     the extension calls on each INVOKE event (the sandbox is frozen
//     between invocations, so a timer of the cache's own would not fire)
//     or, where no INVOKE comes (Lambda Managed Instances), on its timer.
//     At most one read per circuit is in flight.
//   - A Get returns the cached value at once when it is younger than the
//     maximum age (Options.MaxAge). Otherwise, or with no value at all, it
//     waits for the read in flight, at most the miss timeout, with every
//     other caller of the circuit.
//   - When a read fails the last value is returned marked stale. With no
//     value, or after reads have kept failing for longer than the maximum
//     staleness (from the first failed read), it is marked expired: it
//     must not decide. A read whose deadline passed while the sandbox was
//     frozen is no answer, not a failure: it is made again at once.
//   - A cached value is only replaced by a newer one: a higher version, the
//     same version with a later override, or a read that started after the
//     value came in (Put).
//   - A value's age counts from the start of the read that gave it, so it
//     is never younger than the table state it shows.
//   - Memory restored from a snapshot (the wall clock ahead of the
//     monotonic one, see RestoreDrift) is never served as fresh: every
//     value counts as older than the maximum age and is read again.
//   - At most MaxCircuits circuits are kept; the least recently used one
//     is evicted.
package cache
