package breaker

import "github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"

// LookupStats counts the lookups of one circuit since the last
// TakeLookupStats.
type LookupStats struct {
	// Hits were answered at once from a value that was loaded and not stale.
	Hits int64
	// Misses found no value when the lookup started.
	Misses int64
	// Waits found a value older than the maximum age, waited for the
	// refresh and were answered from the fresh value.
	Waits int64
	// Stale were answered from a value that could not be refreshed
	// (including lookups whose wait for a fresh value timed out).
	Stale int64
	// Denied were answered with allowed=false.
	Denied int64
	// State is the effective state of the last answer.
	State circuit.State
}

// IsZero reports whether no lookup was counted.
func (s LookupStats) IsZero() bool { return s == LookupStats{} }

// maxStatsCircuits bounds the circuits counted between two
// TakeLookupStats; the IDs are validated but callers may name many.
const maxStatsCircuits = 1000

// count records the answer of one lookup.
func (b *Breaker) count(a Answer) {
	b.statsMu.Lock()
	defer b.statsMu.Unlock()
	s, ok := b.stats[a.ID]
	if !ok && len(b.stats) >= maxStatsCircuits {
		return
	}
	switch {
	case a.Missed:
		s.Misses++
	case a.Stale:
		s.Stale++
	case a.Waited:
		s.Waits++
	default:
		s.Hits++
	}
	if !a.Allowed {
		s.Denied++
	}
	s.State = a.State
	b.stats[a.ID] = s
}

// TakeLookupStats returns the lookup counts per circuit since the last
// call and starts counting afresh.
func (b *Breaker) TakeLookupStats() map[string]LookupStats {
	b.statsMu.Lock()
	defer b.statsMu.Unlock()
	out := b.stats
	b.stats = make(map[string]LookupStats, len(out))
	return out
}
