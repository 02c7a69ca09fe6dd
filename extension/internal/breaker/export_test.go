package breaker

import "github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"

// Pending returns the number of (circuit, bucket) counts that later
// flushes will write (see outcomes.Aggregator.Pending).
func (b *Breaker) Pending() int { return b.agg.Pending() }

// Counted returns the counts of circuit id kept in memory, written or not.
func (b *Breaker) Counted(id string) circuit.Counts { return b.agg.Counted(id) }

// SetShard makes b write bucket shard n, and draw the sampling of
// evaluations from chance.
func (b *Breaker) SetShard(n int, chance func() float64) {
	b.shard = n
	if chance != nil {
		b.chance = chance
	}
}
