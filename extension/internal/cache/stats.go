package cache

import "github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"

// Stats counts the lookups of one circuit since the last TakeStats.
type Stats struct {
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
	// Refused were answered with allowed=false.
	Refused int64
	// State is the effective state of the last answer.
	State circuit.State
}

// IsZero reports whether no lookup was counted.
func (s Stats) IsZero() bool { return s == Stats{} }

// maxStatsCircuits bounds the circuits counted between two TakeStats; the
// IDs are validated but callers may name many.
const maxStatsCircuits = 1000

// count records the outcome of one lookup; c.mu is not needed.
func (c *Cache) count(d Decision, missed bool) {
	c.statsMu.Lock()
	defer c.statsMu.Unlock()
	s, ok := c.stats[d.ID]
	if !ok && len(c.stats) >= maxStatsCircuits {
		return
	}
	switch {
	case missed:
		s.Misses++
	case d.Stale:
		s.Stale++
	case d.Waited:
		s.Waits++
	default:
		s.Hits++
	}
	if !d.Allowed {
		s.Refused++
	}
	s.State = d.State
	c.stats[d.ID] = s
}

// TakeStats returns the lookup counts per circuit since the last call and
// starts counting afresh.
func (c *Cache) TakeStats() map[string]Stats {
	c.statsMu.Lock()
	defer c.statsMu.Unlock()
	out := c.stats
	c.stats = make(map[string]Stats, len(out))
	return out
}
