// Package outcomes keeps the outcomes of calls in memory, per circuit and
// time bucket, over each circuit's window, and decides which counts the
// extension writes to the table and when.
//
// # Write policy
//
// This is the one description of when outcome counts are written; the
// breaker's Report and Flush, and Due, refer to it.
//
//   - A circuit whose calls all succeeded within its window is never
//     written: its counts stay in memory and expire with the window.
//   - Once the window holds a failed or slow call, the whole window is
//     written, successes included, each bucket once after it ends, so that
//     the rate the fleet reads is the rate of the sandboxes that saw
//     trouble, not of failures alone.
//   - The bucket still filling is never written early, whatever this
//     sandbox's own counts say: only at SHUTDOWN (DueAll), since no later
//     flush will. An early write chosen by the sandbox's own outcomes (a
//     run, a window at a threshold) would make the first writes of a
//     bucket a sample selected by outcome, and a window read before the
//     other sandboxes' writes of that bucket arrive would hold it: the
//     fleet's evidence test holds only for unselected counts. Every
//     sandbox with trouble in its window writes a bucket at the same
//     point, its first flush after the bucket ended, however bad its luck.
//   - A write that failed is offered again at the next flush, with what
//     was counted since; counts whose bucket has left the window are given
//     up and reported as lost.
//
// The aggregator also follows each circuit's run of consecutive failed
// calls, for the local trip, and counts the runs (see CountRun).
package outcomes

import (
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
)

// DefaultMaxCircuits bounds the circuits whose counts are kept in memory.
const DefaultMaxCircuits = 4096

// ErrFull is returned by Record when the outcomes are for a new circuit
// and MaxCircuits circuits already hold counts: the outcomes are rejected,
// not taken.
var ErrFull = errors.New("outcomes: too many circuits with counts in memory")

// Entry is counts of one circuit in one bucket that are due to be written.
type Entry struct {
	ID    string
	Start time.Time
	circuit.Counts
}

// Options configure an Aggregator.
type Options struct {
	// Bucket is the length of a bucket.
	Bucket time.Duration
	// MaxCircuits bounds the circuits kept (default DefaultMaxCircuits).
	MaxCircuits int
	// Window returns the window of circuit id; counts are kept for it.
	Window func(id string) time.Duration
}

type slot struct {
	total, written circuit.Counts
	due            bool      // offered for writing at least once
	notBefore      time.Time // a failed write is not offered again before
	inflight       bool      // offered, and its write has not ended
}

type window struct {
	length time.Duration
	slots  map[int64]*slot // by bucket start, Unix seconds
	// run is the number of consecutive failed calls, the last ones
	// reported; runSince is when the run's first failure was recorded.
	run      int
	runSince time.Time
}

// Aggregator is safe for concurrent use.
type Aggregator struct {
	o Options

	mu       sync.Mutex
	circuits map[string]*window
	rejected int64
	lost     []Entry // given up by Record's pruning, for the next Due to report
}

// New returns an Aggregator.
func New(o Options) *Aggregator {
	if o.MaxCircuits < 1 {
		o.MaxCircuits = DefaultMaxCircuits
	}
	if o.Window == nil {
		o.Window = func(string) time.Duration { return 30 * time.Second }
	}
	return &Aggregator{o: o, circuits: map[string]*window{}}
}

// BucketStart returns the start of the bucket that holds t.
func (a *Aggregator) BucketStart(t time.Time) time.Time {
	return t.Truncate(a.o.Bucket).UTC()
}

// Run is a circuit's run of consecutive failed calls.
type Run struct {
	// Failures is the length of the run.
	Failures int
	// Since is when its first failure was recorded.
	Since time.Time
}

// Record adds c to the bucket of circuit id that holds at. trailing is
// the number of failed calls at the end of the reported sequence (the
// others in c came before them); the circuit's run of consecutive
// failures grows by it when every call in c failed and restarts from it
// otherwise. A run that began before notBefore (the circuit's last
// transition) restarts too: failures from before a circuit closed never
// count towards tripping it again. Record returns the run after the
// update, or ErrFull, taking nothing, when id is a new circuit and memory
// is full.
func (a *Aggregator) Record(id string, at time.Time, c circuit.Counts, trailing int, notBefore time.Time) (Run, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	w, ok := a.circuits[id]
	if !ok {
		if len(a.circuits) >= a.o.MaxCircuits {
			a.lost = append(a.lost, a.pruneLocked(at)...)
		}
		if len(a.circuits) >= a.o.MaxCircuits {
			a.rejected += c.Calls
			return Run{}, ErrFull
		}
		w = &window{length: a.o.Window(id), slots: map[int64]*slot{}}
		a.circuits[id] = w
	}
	start := a.BucketStart(at).Unix()
	s := w.slots[start]
	if s == nil {
		s = &slot{}
		w.slots[start] = s
	}
	s.total = s.total.Add(c)
	switch {
	case trailing <= 0:
		w.run, w.runSince = 0, time.Time{}
	case int64(trailing) < c.Calls || w.run == 0 || w.runSince.Before(notBefore):
		w.run, w.runSince = trailing, at
	default:
		w.run += trailing
	}
	return Run{Failures: w.run, Since: w.runSince}, nil
}

// RunOf returns circuit id's current run of consecutive failed calls
// (zero when its last reported call succeeded or it has none).
func (a *Aggregator) RunOf(id string) Run {
	a.mu.Lock()
	defer a.mu.Unlock()
	w, ok := a.circuits[id]
	if !ok {
		return Run{}
	}
	return Run{Failures: w.run, Since: w.runSince}
}

// pruneLocked forgets buckets that have left their window, and circuits
// left with none. It returns the counts forgotten that had been due to be
// written.
func (a *Aggregator) pruneLocked(now time.Time) []Entry {
	var lost []Entry
	for id, w := range a.circuits {
		for start, s := range w.slots {
			st := time.Unix(start, 0).UTC()
			if !st.Add(a.o.Bucket+w.length).Before(now) || s.inflight {
				continue // still in the window, or its write has not ended
			}
			// Counts that were or should have been written: offered
			// before, or holding a failure or a slow call themselves.
			if d := s.total.Sub(s.written); !d.IsZero() && (s.due || d.Failures > 0 || d.Slow > 0) {
				lost = append(lost, Entry{ID: id, Start: st, Counts: d})
			}
			delete(w.slots, start)
		}
		if len(w.slots) == 0 {
			delete(a.circuits, id)
		}
	}
	sortEntries(lost)
	return lost
}

// Due returns the counts the write policy (see the package doc) makes due
// at now, ended buckets only, and those given up as lost: no window read
// from now on includes them. It marks the returned counts as offered;
// each returned entry is in flight until Written, Failed or GiveUp is
// called with it, and its bucket is not offered again before.
func (a *Aggregator) Due(now time.Time) (due, lost []Entry) { return a.due(now, false) }

// DueAll is Due at SHUTDOWN: the buckets still filling are due too, since
// no later flush will write them.
func (a *Aggregator) DueAll(now time.Time) (due, lost []Entry) { return a.due(now, true) }

// due is Due, with the buckets still filling due too when filling.
func (a *Aggregator) due(now time.Time, filling bool) (due, lost []Entry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	lost = append(a.lost, a.pruneLocked(now)...)
	a.lost = nil
	sortEntries(lost)
	current := a.BucketStart(now).Unix()
	for id, w := range a.circuits {
		var sum circuit.Counts
		for _, s := range w.slots {
			sum = sum.Add(s.total)
		}
		if sum.Failures == 0 && sum.Slow == 0 {
			continue
		}
		for start, s := range w.slots {
			d := s.total.Sub(s.written)
			if d.IsZero() || s.inflight || now.Before(s.notBefore) {
				continue
			}
			if start >= current && !filling {
				continue
			}
			s.due, s.inflight = true, true
			due = append(due, Entry{ID: id, Start: time.Unix(start, 0).UTC(), Counts: d})
		}
	}
	sortEntries(due)
	return due, lost
}

// Written records that e's counts reached the table.
func (a *Aggregator) Written(e Entry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if s := a.slotLocked(e); s != nil {
		s.written = s.written.Add(e.Counts)
		s.inflight = false
	}
}

// Failed records that writing e failed: it is offered again by the next
// Due, with whatever was counted since.
func (a *Aggregator) Failed(e Entry) { a.FailedUntil(e, time.Time{}) }

// FailedUntil is Failed for a write the table refused for now (throttled,
// timed out): its counts are not offered again before notBefore, so that
// a fleet whose writes to one item are throttled does not retry them all
// at every flush.
func (a *Aggregator) FailedUntil(e Entry, notBefore time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if s := a.slotLocked(e); s != nil {
		s.inflight = false
		s.notBefore = notBefore
	}
}

func (a *Aggregator) slotLocked(e Entry) *slot {
	if w, ok := a.circuits[e.ID]; ok {
		return w.slots[e.Start.Unix()]
	}
	return nil
}

// GiveUp records that e's counts will never be written (the table refused
// them for good): they are treated as written.
func (a *Aggregator) GiveUp(e Entry) { a.Written(e) }

// Pending returns the number of (circuit, bucket) counts not yet written
// in windows that hold a failed or slow call: what later flushes write.
// Counts of healthy windows are not pending; they are never written.
func (a *Aggregator) Pending() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, w := range a.circuits {
		var sum circuit.Counts
		unwritten := 0
		for _, s := range w.slots {
			sum = sum.Add(s.total)
			if !s.total.Sub(s.written).IsZero() {
				unwritten++
			}
		}
		if sum.Failures > 0 || sum.Slow > 0 {
			n += unwritten
		}
	}
	return n
}

// Counted returns the counts of circuit id kept in memory, written or not.
func (a *Aggregator) Counted(id string) circuit.Counts {
	a.mu.Lock()
	defer a.mu.Unlock()
	var sum circuit.Counts
	if w, ok := a.circuits[id]; ok {
		for _, s := range w.slots {
			sum = sum.Add(s.total)
		}
	}
	return sum
}

// Circuits returns the number of circuits with counts in memory.
func (a *Aggregator) Circuits() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.circuits)
}

// TakeRejected returns the number of calls rejected by Record with ErrFull
// since the last call, and resets it.
func (a *Aggregator) TakeRejected() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := a.rejected
	a.rejected = 0
	return n
}

func sortEntries(es []Entry) {
	sort.Slice(es, func(i, j int) bool {
		if es[i].Start.Equal(es[j].Start) {
			return es[i].ID < es[j].ID
		}
		return es[i].Start.Before(es[j].Start)
	})
}

// CountRun counts a run of consecutive failed calls of circuit id, which
// reached the length that counts, in the bucket that holds at, and starts
// the circuit's run afresh: each run is counted once.
func (a *Aggregator) CountRun(id string, at time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	w, ok := a.circuits[id]
	if !ok {
		return
	}
	start := a.BucketStart(at).Unix()
	s := w.slots[start]
	if s == nil {
		s = &slot{}
		w.slots[start] = s
	}
	s.total.Runs++
	w.run, w.runSince = 0, time.Time{}
}
