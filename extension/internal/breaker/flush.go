package breaker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/policy"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
)

// FlushResult says what one Flush did.
type FlushResult struct {
	// Written and Failed count the bucket writes; failed counts are kept
	// for the next flush.
	Written, Failed int
	// Dropped counts pending buckets given up: too old to count in any
	// window, or refused by the table for good (see store.Permanent).
	Dropped int
	// Evaluated counts the circuits whose window was read; Tripped those
	// this flush opened (by their rates or by a fast trip).
	Evaluated, Tripped int
}

// maxLoggedErrors is how many errors a flush's error names; the others
// are counted.
const maxLoggedErrors = 3

// Flush writes the counts that are due (see outcomes.Aggregator.Due) to
// their bucket items (atomic ADDs): nothing for circuits whose calls all
// succeeded within their window; for the others each bucket once it has
// ended, successes included, and the bucket still filling early when this
// extension's own window already reaches a threshold. Then, for each
// circuit whose written counts held a failure or a slow call, it reads the
// window's buckets and trips the circuit when its rate is reached, and it
// applies the fast trips that failed when their outcomes were reported.
// Writes and evaluations of different circuits run concurrently. Counts
// whose write failed are kept for the next flush, unless the failure is
// permanent (access denied: the function is not attached to that service;
// a missing table) or the bucket has left every window: those are dropped
// and logged, so they are not retried forever. Work that ctx leaves no
// time for (the invocation's budget) waits for the next flush. The error,
// if any, names at most a few of the errors and counts the others.
func (b *Breaker) Flush(ctx context.Context) (FlushResult, error) { return b.flush(ctx, false) }

// FlushAll is Flush at SHUTDOWN: the buckets still filling are written
// too, since no later flush will.
func (b *Breaker) FlushAll(ctx context.Context) (FlushResult, error) { return b.flush(ctx, true) }

func (b *Breaker) flush(ctx context.Context, final bool) (FlushResult, error) {
	b.flushMu.Lock()
	defer b.flushMu.Unlock()
	if final {
		b.waitWrites(ctx)
	}
	var res FlushResult
	entries, lost := b.agg.Due(b.o.Now(), final, b.urgent)
	for _, e := range lost {
		res.Dropped++
		b.o.Logger.Warn("outcome counts dropped: older than the window",
			"service", e.ID, "bucket", e.Start, "calls", e.Calls, "window", b.o.Policies.For(e.ID).Rates().Window.String())
	}
	b.mu.Lock()
	work := len(entries) + len(b.unevaluated) + len(b.trips)
	b.mu.Unlock()
	if work == 0 {
		return res, nil
	}
	st, err := b.store(ctx)
	if err != nil {
		for _, e := range entries {
			b.agg.Failed(e)
		}
		res.Failed = len(entries)
		return res, fmt.Errorf("flush: %w", err)
	}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, flushParallelism)
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	// Bucket writes are not cancelled when ctx ends: an atomic ADD whose
	// request was cut off may still have been applied, and writing it
	// again would count it twice. A write that outlives ctx goes on in the
	// background (in Lambda: after the next event/next, or once the sandbox
	// thaws) within writeTimeout, and its counts are settled when it ends;
	// FlushAll waits for such writes before it starts.
	var writes sync.WaitGroup
	for _, e := range entries {
		if !acquire(ctx, sem) {
			b.agg.Failed(e) // the budget ran out: kept for the next flush
			mu.Lock()
			res.Failed++
			mu.Unlock()
			continue
		}
		writes.Add(1)
		b.writes.Add(1)
		go func() {
			defer b.writes.Done()
			defer writes.Done()
			defer func() { <-sem }()
			window := b.o.Policies.For(e.ID).Rates().Window
			expires := e.Start.Add(policy.BucketSize + window + ttlMargin)
			wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
			err := st.AddCounts(wctx, e.ID, e.Start, e.Counts, expires)
			cancel()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				if store.Permanent(err) {
					b.agg.GiveUp(e)
					res.Dropped++
					b.o.Logger.Warn("outcome counts dropped: the table refused them; is the function attached to this service?",
						"service", e.ID, "bucket", e.Start, "calls", e.Calls, "error", err.Error())
					return
				}
				b.agg.Failed(e)
				res.Failed++
				return
			}
			b.agg.Written(e)
			res.Written++
			if e.Failures > 0 || e.Slow > 0 {
				b.mu.Lock()
				b.unevaluated[e.ID] = true
				b.mu.Unlock()
			}
		}()
	}
	waitFor(ctx, &writes)
	b.mu.Lock()
	ids := make([]string, 0, len(b.unevaluated))
	for id := range b.unevaluated {
		ids = append(ids, id)
	}
	trips := maps.Clone(b.trips)
	b.mu.Unlock()
	for _, id := range ids {
		if !spawn(ctx, sem, &wg, func() {
			tripped, err := b.evaluate(ctx, id)
			if err != nil {
				fail(err)
				return
			}
			b.mu.Lock()
			delete(b.unevaluated, id)
			b.mu.Unlock()
			mu.Lock()
			res.Evaluated++
			if tripped {
				res.Tripped++
			}
			mu.Unlock()
		}) {
			break
		}
	}
	for id, run := range trips {
		if !spawn(ctx, sem, &wg, func() {
			before, _ := b.peek(id)
			after, err := b.fastTrip(ctx, id, run)
			if err != nil {
				fail(err)
				return
			}
			if after.State == circuit.Open && before.State != circuit.Open {
				mu.Lock()
				res.Tripped++
				mu.Unlock()
			}
		}) {
			break
		}
	}
	// Evaluations and trips whose writes outlive ctx go on in the
	// background, like bucket writes.
	waitFor(ctx, &wg)
	mu.Lock()
	defer mu.Unlock()
	return res, summarize(errs)
}

// waitWrites waits until the bucket writes of earlier flushes have ended,
// or ctx ends.
func (b *Breaker) waitWrites(ctx context.Context) { waitFor(ctx, &b.writes) }

// waitFor waits until the work wg counts has ended, or ctx ends.
func waitFor(ctx context.Context, wg *sync.WaitGroup) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// spawn runs f in a new goroutine counted by wg and holding a slot of
// sem, and reports true; it reports false, running nothing, when ctx ends
// before a slot is free.
func spawn(ctx context.Context, sem chan struct{}, wg *sync.WaitGroup, f func()) bool {
	if !acquire(ctx, sem) {
		return false
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer func() { <-sem }()
		f()
	}()
	return true
}

// acquire takes a slot of sem and reports true, or reports false when ctx
// has ended or ends first.
func acquire(ctx context.Context, sem chan struct{}) bool {
	if ctx.Err() != nil {
		return false
	}
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	if ctx.Err() != nil {
		<-sem
		return false
	}
	return true
}

// urgent says whether this extension's own window counts w of circuit id
// already reach a rate threshold: its evidence may trip the circuit, so
// the bucket still filling is written at once.
func (b *Breaker) urgent(id string, w circuit.Counts) bool {
	if w.Calls == 0 {
		return false
	}
	r := b.o.Policies.For(id).Rates()
	return 100*float64(w.Failures) >= r.FailureRateThreshold*float64(w.Calls) ||
		100*float64(w.Slow) >= r.SlowCallRateThreshold*float64(w.Calls)
}

// summarize joins at most maxLoggedErrors of errs and counts the others,
// so that a flush's warning stays a small log line.
func summarize(errs []error) error {
	if len(errs) <= maxLoggedErrors {
		return errors.Join(errs...)
	}
	first := errors.Join(errs[:maxLoggedErrors]...)
	return fmt.Errorf("%d errors, the first %d: %w", len(errs), maxLoggedErrors, first)
}

// WindowStarts returns the starts of the buckets that make up the window
// of length window ending at now: window/BucketSize buckets, the last one
// holding now.
func WindowStarts(now time.Time, window time.Duration) []time.Time {
	last := now.Truncate(policy.BucketSize)
	n := int(window / policy.BucketSize)
	if n < 1 {
		n = 1
	}
	out := make([]time.Time, n)
	for i := range n {
		out[i] = last.Add(-time.Duration(n-1-i) * policy.BucketSize).UTC()
	}
	return out
}

// evaluate reads the window of circuit id and trips it when the rate is
// reached, through store.Apply. A circuit the cache holds as not CLOSED is
// read again first, since the cache may be behind the table (another
// sandbox's probe closed it meanwhile); it is skipped only when the table
// agrees.
func (b *Breaker) evaluate(ctx context.Context, id string) (bool, error) {
	st, err := b.store(ctx)
	if err != nil {
		return false, err
	}
	cached, ok := b.peek(id)
	if !ok {
		cached = circuit.New(id)
	}
	if cached.State != circuit.Closed && cached.State != "" {
		cur, _, err := st.Get(ctx, id)
		if err != nil {
			return false, fmt.Errorf("evaluate %q: %w", id, err)
		}
		b.put(cur)
		if cur.State != circuit.Closed {
			return false, nil // already tripped: nothing to decide
		}
		cached = cur
	}
	pol := b.o.Policies.For(id)
	settings, rates := pol.Settings(), pol.Rates()
	now := b.o.Now()
	buckets, err := st.GetBuckets(ctx, id, WindowStarts(now, rates.Window))
	if err != nil {
		return false, fmt.Errorf("evaluate %q: %w", id, err)
	}
	if circuit.DecideRate(cached, settings, rates, buckets, now).Change != circuit.Transition {
		return false, nil
	}
	// A trip cut off after it was sent may have been applied, with no one
	// to log it: the write outlives ctx (see Flush).
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	defer cancel()
	applied, err := st.WithLogger(b.o.Logger).Apply(actx, id, func(cur circuit.Circuit) circuit.Decision {
		return circuit.DecideRate(cur, settings, rates, buckets, now)
	})
	if err != nil {
		return false, fmt.Errorf("evaluate %q: %w", id, err)
	}
	b.put(applied.After())
	return applied.Decision.Transitioned(), nil
}
