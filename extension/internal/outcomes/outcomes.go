// Package outcomes aggregates the outcomes of calls in memory, per circuit
// and time bucket, until the extension flushes them to the table.
package outcomes

import (
	"sort"
	"sync"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
)

// DefaultMaxEntries bounds the pending (circuit, bucket) pairs kept in
// memory; past it the oldest bucket is dropped.
const DefaultMaxEntries = 4096

// Entry is the pending counts of one circuit in one bucket.
type Entry struct {
	ID    string
	Start time.Time
	circuit.Counts
}

type key struct {
	id    string
	start int64 // Unix seconds
}

// Aggregator is safe for concurrent use.
type Aggregator struct {
	bucket time.Duration
	max    int

	mu      sync.Mutex
	pending map[key]circuit.Counts
	dropped int64
}

// New returns an aggregator with buckets of the given size that keeps at
// most max pending entries (max < 1: DefaultMaxEntries).
func New(bucket time.Duration, max int) *Aggregator {
	if max < 1 {
		max = DefaultMaxEntries
	}
	return &Aggregator{bucket: bucket, max: max, pending: map[key]circuit.Counts{}}
}

// BucketStart returns the start of the bucket that holds t.
func (a *Aggregator) BucketStart(t time.Time) time.Time {
	return t.Truncate(a.bucket).UTC()
}

// Record adds c to the bucket of circuit id that holds at.
func (a *Aggregator) Record(id string, at time.Time, c circuit.Counts) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.addLocked(key{id, a.BucketStart(at).Unix()}, c)
}

func (a *Aggregator) addLocked(k key, c circuit.Counts) {
	if cur, ok := a.pending[k]; ok {
		a.pending[k] = cur.Add(c)
		return
	}
	for len(a.pending) >= a.max {
		a.dropOldestLocked()
	}
	a.pending[k] = c
}

func (a *Aggregator) dropOldestLocked() {
	var oldest key
	first := true
	for k := range a.pending {
		if first || k.start < oldest.start {
			oldest, first = k, false
		}
	}
	a.dropped += a.pending[oldest].Calls
	delete(a.pending, oldest)
}

// Take removes and returns every pending entry, oldest first.
func (a *Aggregator) Take() []Entry {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.pending) == 0 {
		return nil
	}
	out := make([]Entry, 0, len(a.pending))
	for k, c := range a.pending {
		out = append(out, Entry{ID: k.id, Start: time.Unix(k.start, 0).UTC(), Counts: c})
	}
	a.pending = make(map[key]circuit.Counts, len(out))
	sort.Slice(out, func(i, j int) bool {
		if out[i].Start.Equal(out[j].Start) {
			return out[i].ID < out[j].ID
		}
		return out[i].Start.Before(out[j].Start)
	})
	return out
}

// Restore puts entries whose flush failed back, merged with anything
// recorded since, so the next flush retries them.
func (a *Aggregator) Restore(entries []Entry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range entries {
		a.addLocked(key{e.ID, e.Start.Unix()}, e.Counts)
	}
}

// Pending returns the number of pending entries.
func (a *Aggregator) Pending() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.pending)
}

// Dropped returns the number of calls dropped because memory was full.
func (a *Aggregator) Dropped() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.dropped
}
