package breaker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/outcomes"
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
	// this flush opened.
	Evaluated, Tripped int
}

// Flush writes the pending counts to their bucket items (atomic ADDs) and
// then, for each circuit whose flushed counts held a failure or a slow
// call, reads the window's buckets and trips the circuit when its rate is
// reached. Counts whose write failed are kept for the next flush, unless
// the failure is permanent (access denied: the function is not attached
// to that service; a missing table) or the bucket has left every window
// by the next flush: those are dropped and logged, so they are not retried
// forever. It returns once done or when ctx ends.
func (b *Breaker) Flush(ctx context.Context) (FlushResult, error) {
	var res FlushResult
	entries := b.dropExpired(b.agg.Take(), &res)
	if len(entries) == 0 {
		return res, nil
	}
	st, err := b.store(ctx)
	if err != nil {
		b.agg.Restore(entries)
		res.Failed = len(entries)
		return res, fmt.Errorf("flush: %w", err)
	}
	var (
		mu     sync.Mutex
		failed []outcomes.Entry
		errs   []error
		wg     sync.WaitGroup
		sem    = make(chan struct{}, flushParallelism)
		bad    = map[string]bool{}
	)
	for _, e := range entries {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			window := time.Duration(b.o.Policies.For(e.ID).Window)
			expires := e.Start.Add(policy.BucketSize + window + ttlMargin)
			err := st.AddCounts(ctx, e.ID, e.Start, e.Counts, expires)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				if store.Permanent(err) {
					res.Dropped++
					b.o.Logger.Warn("outcome counts dropped: the table refused them; is the function attached to this service?",
						"service", e.ID, "bucket", e.Start, "calls", e.Calls, "error", err.Error())
					return
				}
				failed = append(failed, e)
				return
			}
			res.Written++
			if e.Failures > 0 || e.Slow > 0 {
				bad[e.ID] = true
			}
		}()
	}
	wg.Wait()
	if len(failed) > 0 {
		b.agg.Restore(failed)
		res.Failed = len(failed)
	}
	for id := range bad {
		res.Evaluated++
		tripped, err := b.evaluate(ctx, id)
		if err != nil {
			errs = append(errs, err)
		}
		if tripped {
			res.Tripped++
		}
	}
	return res, errors.Join(errs...)
}

// dropExpired removes the entries whose bucket ended more than their
// service's window ago: no window evaluated from now on includes them.
func (b *Breaker) dropExpired(entries []outcomes.Entry, res *FlushResult) []outcomes.Entry {
	now := b.o.Now()
	kept := entries[:0]
	for _, e := range entries {
		window := time.Duration(b.o.Policies.For(e.ID).Window)
		if e.Start.Add(policy.BucketSize + window).Before(now) {
			res.Dropped++
			b.o.Logger.Warn("outcome counts dropped: older than the window",
				"service", e.ID, "bucket", e.Start, "calls", e.Calls, "window", window.String())
			continue
		}
		kept = append(kept, e)
	}
	return kept
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
	applied, err := st.WithLogger(b.o.Logger).Apply(ctx, id, func(cur circuit.Circuit) circuit.Decision {
		return circuit.DecideRate(cur, settings, rates, buckets, now)
	})
	if err != nil {
		return false, fmt.Errorf("evaluate %q: %w", id, err)
	}
	b.put(applied.After())
	return applied.Decision.Transitioned(), nil
}
