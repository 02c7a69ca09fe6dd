package breaker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
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
	// window, refused by the table for good (see store.Permanent), or
	// whose failed write may have been applied (see store.Ambiguous).
	Dropped int
	// Evaluated counts the circuits whose window was read; Tripped those
	// this flush opened (see circuit.DecideRate).
	Evaluated, Tripped int
	// Skipped counts the written buckets holding trouble that led to no
	// evaluation: this environment's own window was not urgent, or the
	// write was not sampled (see evaluateChance).
	Skipped int
}

// maxLoggedErrors is how many errors a flush's error names; the others
// are counted.
const maxLoggedErrors = 3

// Flush writes the counts that are due, by the write policy of package
// outcomes (ended buckets only: never the bucket still filling, whatever
// this environment's own counts say, so that what a window read holds is
// never selected by outcome), to this environment's shard of their bucket
// items (atomic ADDs). Then it evaluates the circuits that a write
// elected (see evaluation): it reads every shard of the window's buckets
// and trips the circuit when circuit.DecideRate says so.
// Writes and evaluations of different circuits run concurrently. Counts
// whose write failed are kept for the next flush when the write was not
// applied (throttled, never sent), unless the bucket has left every
// window. They are dropped and logged when the failure is permanent
// (access denied: the function is not attached to that service; a missing
// table), so they are not retried forever, and when the write may have
// been applied (a timeout once sent, a 5xx, a reset connection): sent
// again, they could count twice, and a fleet's counts doubled may trip a
// healthy circuit, while counts missing cannot. Work that ctx leaves no
// time for (the invocation's budget) waits for the next flush. The error,
// if any, names at most a few of the errors and counts the others.
func (b *Breaker) Flush(ctx context.Context) (FlushResult, error) {
	b.flushMu.Lock()
	defer b.flushMu.Unlock()
	due, lost := b.agg.Due(b.o.Now())
	return b.flush(ctx, due, lost)
}

// FlushAll is Flush at SHUTDOWN: the buckets still filling are written
// too, since no later flush will. It first waits, within ctx, for the
// bucket writes of earlier flushes that outlived their budget.
func (b *Breaker) FlushAll(ctx context.Context) (FlushResult, error) {
	b.flushMu.Lock()
	defer b.flushMu.Unlock()
	b.waitWrites(ctx)
	due, lost := b.agg.DueAll(b.o.Now())
	return b.flush(ctx, due, lost)
}

// flushRun collects what one flush did; its steps run concurrently.
type flushRun struct {
	mu   sync.Mutex
	res  FlushResult
	errs []error
	// sem bounds the concurrent bucket writes, then the concurrent
	// evaluations and trips.
	sem chan struct{}
	// work counts the evaluations and trips in flight.
	work sync.WaitGroup
	// maybeApplied sums the counts given up because their write may
	// have been applied, for one warning per flush (reportMaybeApplied);
	// such writes that end after it log their own.
	maybeApplied maybeApplied
	reported     bool
}

// maybeApplied sums bucket counts given up because their write may have
// been applied.
type maybeApplied struct {
	buckets  int
	counts   circuit.Counts
	services []string
	err      error
}

// msgMaybeApplied is the warning about counts whose write may have been
// applied.
const msgMaybeApplied = "outcome counts dropped: the write may have been applied; not sent again so it is never counted twice"

// maxLoggedServices is how many services a warning names.
const maxLoggedServices = 5

// dropMaybeApplied records counts e given up because their write failed
// with err, which may have been applied, and logs them at once when the
// flush's warning was already logged.
func (r *flushRun) dropMaybeApplied(l *slog.Logger, e outcomes.Entry, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.res.Dropped++
	r.errs = append(r.errs, err)
	m := &r.maybeApplied
	m.buckets++
	m.counts = m.counts.Add(e.Counts)
	if len(m.services) < maxLoggedServices && !slices.Contains(m.services, e.ID) {
		m.services = append(m.services, e.ID)
	}
	if m.err == nil {
		m.err = err
	}
	if r.reported {
		r.logMaybeApplied(l)
	}
}

// reportMaybeApplied logs the counts given up so far because their write
// may have been applied, in one warning; counts given up later are logged
// as they are.
func (r *flushRun) reportMaybeApplied(l *slog.Logger) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reported = true
	r.logMaybeApplied(l)
}

// logMaybeApplied logs and clears r.maybeApplied. The caller holds r.mu.
func (r *flushRun) logMaybeApplied(l *slog.Logger) {
	m := r.maybeApplied
	if m.buckets == 0 {
		return
	}
	r.maybeApplied = maybeApplied{}
	l.Warn(msgMaybeApplied, "buckets", m.buckets, "services", m.services,
		"calls", m.counts.Calls, "failures", m.counts.Failures, "slow", m.counts.Slow, "runs", m.counts.Runs,
		"error", m.err.Error())
}

// add records a step's effect on the result, and its error if not nil.
func (r *flushRun) add(err error, f func(res *FlushResult)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.errs = append(r.errs, err)
	}
	if f != nil {
		f(&r.res)
	}
}

// flush writes due, logs lost, then evaluates the circuits whose written
// counts held trouble, in that order.
// The caller holds flushMu.
func (b *Breaker) flush(ctx context.Context, due, lost []outcomes.Entry) (FlushResult, error) {
	run := &flushRun{sem: make(chan struct{}, flushParallelism)}
	b.dropLost(run, lost)
	b.mu.Lock()
	work := len(due) + len(b.unevaluated)
	b.mu.Unlock()
	if work == 0 {
		return run.res, nil
	}
	st, err := b.store(ctx)
	if err != nil {
		for _, e := range due {
			b.agg.Failed(e)
		}
		run.res.Failed += len(due)
		return run.res, fmt.Errorf("flush: %w", err)
	}
	b.writeBuckets(ctx, st, run, due)
	run.reportMaybeApplied(b.o.Logger)
	b.evaluateWindows(ctx, run)
	// Evaluations whose writes outlive ctx go on in the background, like
	// bucket writes.
	waitFor(ctx, &run.work)
	run.mu.Lock()
	defer run.mu.Unlock()
	return run.res, summarize(run.errs)
}

// dropLost logs the counts given up because their bucket left the window.
func (b *Breaker) dropLost(run *flushRun, lost []outcomes.Entry) {
	for _, e := range lost {
		run.res.Dropped++
		b.o.Logger.Warn("outcome counts dropped: older than the window",
			"service", e.ID, "bucket", e.Start, "calls", e.Calls, "window", b.o.Policies.For(e.ID).Rates().Window.String())
	}
}

// writeBuckets adds the counts of due to their bucket items, concurrently,
// and waits for the writes until ctx ends. Bucket writes are not
// cancelled when ctx ends: an atomic ADD whose request was cut off may
// still have been applied, and its counts would then be given up (see
// writeBucket). A
// write that outlives ctx goes on in the background (in Lambda: after the
// next event/next, or once the sandbox thaws) within writeTimeout, and its
// counts are settled when it ends; FlushAll waits for such writes before
// it starts. Counts the budget leaves no slot for are kept for the next
// flush.
func (b *Breaker) writeBuckets(ctx context.Context, st *store.Store, run *flushRun, due []outcomes.Entry) {
	var writes sync.WaitGroup
	for _, e := range due {
		if !acquire(ctx, run.sem) {
			b.agg.Failed(e) // the budget ran out: kept for the next flush
			run.add(nil, func(res *FlushResult) { res.Failed++ })
			continue
		}
		writes.Add(1)
		b.writes.Add(1)
		go func() {
			defer b.writes.Done()
			defer writes.Done()
			defer func() { <-run.sem }()
			b.writeBucket(ctx, st, run, e)
		}()
	}
	waitFor(ctx, &writes)
}

// writeBucket writes the counts of e to this environment's shard and
// settles them: written; kept for the next flush when the write was not
// applied (throttled, never sent); given up when the table refuses them
// for good, or when the write may have been applied (store.Ambiguous:
// sent again, it could count them twice; when in doubt, undercount). A
// written bucket holding trouble may leave its circuit to evaluate (see
// elect).
func (b *Breaker) writeBucket(ctx context.Context, st *store.Store, run *flushRun, e outcomes.Entry) {
	window := b.o.Policies.For(e.ID).Rates().Window
	expires := e.Start.Add(policy.BucketSize + window + ttlMargin)
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	shard, err := st.AddCounts(wctx, e.ID, e.Start, b.shard, e.Counts, expires)
	cancel()
	switch {
	case err != nil && store.Permanent(err):
		b.agg.GiveUp(e)
		run.add(err, func(res *FlushResult) { res.Dropped++ })
		b.o.Logger.Warn("outcome counts dropped: the table refused them; is the function attached to this service?",
			"service", e.ID, "bucket", e.Start, "calls", e.Calls, "error", err.Error())
	case err != nil && store.Ambiguous(err):
		b.agg.GiveUp(e)
		run.dropMaybeApplied(b.o.Logger, e, err)
	case err != nil:
		b.agg.FailedUntil(e, b.o.Now().Add(retryPause()))
		run.add(err, func(res *FlushResult) { res.Failed++ })
	default:
		b.agg.Written(e)
		run.add(nil, func(res *FlushResult) { res.Written++ })
		b.remember(e.ID, shard, window)
		if e.Failures == 0 && e.Slow == 0 {
			return
		}
		if !b.elect(e.ID, e.Runs > 0, shard.Writes) {
			run.add(nil, func(res *FlushResult) { res.Skipped++ })
			return
		}
		b.mu.Lock()
		b.unevaluated[e.ID] = time.Time{}
		b.mu.Unlock()
	}
}

// elect says whether a written bucket of circuit id that held a failed or
// slow call (and a run when holdsRun) leads to an evaluation of the
// circuit's window, the write being the k-th of its bucket shard (0:
// unknown). Three rules keep the window reads of a fleet small:
//
//   - Only an environment whose own window is urgent evaluates. By a rate:
//     it reaches a rate threshold. When the fleet's window reaches a
//     threshold, so does the window of at least one environment that
//     wrote, since the fleet's rate is a weighted mean of theirs; a fleet
//     degraded below the threshold reads almost nothing. A window of at
//     least minTripCalls calls must also be evidence of its own (see
//     localEvidenceHolds): a few dozen calls reach the threshold by chance
//     at rates well under it. By a run: the write that holds the run and
//     the next one (should the first evaluation's eventually consistent
//     read have missed a concurrent write), not every write while the run
//     stays in the window: the runs rule adds up the runs of many
//     environments, which each evaluate when theirs is written.
//   - Of those, one evaluates with probability evaluateChance(k): the
//     first writers of each shard always, later ones less and less often,
//     so that a bucket's evaluations grow with the logarithm of the fleet,
//     not with the fleet.
//   - That probability is scaled by the environment's weight in the
//     fleet's window: its window's calls over minTripCalls, the fewest
//     calls any window can trip on, when they are fewer. A sparse
//     environment (one call per window, whose one failure makes it urgent)
//     evaluates about once per minTripCalls of its calls, so a sparse
//     fleet evaluates about once per minTripCalls calls it writes, which
//     is about as often as its evidence can change a decision; a lone
//     environment with fewer calls cannot trip its window anyway.
func (b *Breaker) elect(id string, holdsRun bool, k int64) bool {
	w := b.agg.Counted(id)
	rates := b.o.Policies.For(id).Rates()
	m := minTripCalls(rates)
	byRun := w.Runs > 0 && b.runTurn(id, holdsRun)
	byRate := b.urgentRate(id, w) && (w.Calls < m || localEvidenceHolds(w, rates))
	if !byRun && !byRate {
		return false
	}
	p := evaluateChance(k)
	if w.Calls < m {
		p *= float64(w.Calls) / float64(m)
	}
	return b.chance() < p
}

// runTurn says whether a write of circuit id is one of the two a run
// makes evaluate: the one that holds it (holdsRun), and the next.
func (b *Breaker) runTurn(id string, holdsRun bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if holdsRun {
		b.runFollowUp[id] = true
		return true
	}
	if b.runFollowUp[id] {
		delete(b.runFollowUp, id)
		return true
	}
	return false
}

// localEvidence is how much evidence, in nats, a window of at least
// minTripCalls calls must hold that its calls fail (or are slow) more
// often than 0.8 × the threshold before its environment reads the fleet's
// window: 3 nats, a tail probability of 5 % (circuit.RateEvidence). A
// busy environment's window reaches it at once (600 calls at 50 %: 12
// nats); 30 calls at 40 % errors reach the 50 % threshold one time in six
// by chance, but this (19 failed) one time in 120, and at 55 % errors
// about one time in four.
const localEvidence = 3.0

// localEvidenceHolds says whether window counts w hold localEvidence for
// the failure or the slow-call rate of rates.
func localEvidenceHolds(w circuit.Counts, rates circuit.RateSettings) bool {
	r := rates.WithDefaults()
	return circuit.RateEvidence(w.Calls, w.Failures, circuit.NullShare*r.FailureRateThreshold/100) >= localEvidence ||
		circuit.RateEvidence(w.Calls, w.Slow, circuit.NullShare*r.SlowCallRateThreshold/100) >= localEvidence
}

// maxTripCalls bounds minTripCalls' search.
const maxTripCalls = 100_000

// minTripCalls returns the fewest calls in a window on which
// circuit.DecideRate can open a circuit with rates r: every call failed
// (or was slow), for the rate rules with at least MinimumCalls calls, or
// every FastTripFailures calls a run, for the runs rule. 26 with the
// defaults (the rate rule: 26 failures at 0.8 × 50 %).
func minTripCalls(r circuit.RateSettings) int64 {
	r = r.WithDefaults()
	p0 := circuit.NullShare * r.FailureRateThreshold / 100
	slow := circuit.NullShare * r.SlowCallRateThreshold / 100
	for n := int64(1); n < maxTripCalls; n++ {
		if n >= int64(r.MinimumCalls) && (circuit.ImprobableRate(n, n, p0) || circuit.ImprobableRate(n, n, slow)) {
			return n
		}
		if circuit.ImprobableRuns(n, n/int64(r.FastTripFailures), p0, r.FastTripFailures) {
			return n
		}
	}
	return maxTripCalls
}

// evaluateChance is the probability that the k-th write of a bucket
// shard leads to an evaluation: min(1, c/k) with c = evaluateSample. Over
// a bucket written by n environments spread over S shards, that is about
// S·c·(1 + ln(n/(S·c))) evaluations fleet-wide (the harmonic sum of each
// shard's n/S writes), and a lone environment (k = 1) always evaluates.
// k < 1 (the table did not say) counts as the first.
func evaluateChance(k int64) float64 {
	if k <= evaluateSample {
		return 1
	}
	return evaluateSample / float64(k)
}

// remember keeps shard, this environment's shard of a bucket of circuit
// id as its write left it, for the evaluations of the window: their reads
// may not see that write yet. Shards of buckets older than the window are
// forgotten.
func (b *Breaker) remember(id string, shard store.BucketShard, window time.Duration) {
	if shard.Writes == 0 {
		return // the table did not return the shard
	}
	oldest := b.o.Now().Add(-window - policy.BucketSize).Unix()
	b.mu.Lock()
	defer b.mu.Unlock()
	m := b.own[id]
	if m == nil {
		m = map[int64]store.BucketShard{}
		b.own[id] = m
	}
	for start := range m {
		if start < oldest {
			delete(m, start)
		}
	}
	if cur, ok := m[shard.Start.Unix()]; !ok || cur.Writes < shard.Writes {
		m[shard.Start.Unix()] = shard
	}
}

// ownShards returns the shards of circuit id that this environment wrote,
// of the buckets that start at starts.
func (b *Breaker) ownShards(id string, starts []time.Time) []store.BucketShard {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []store.BucketShard
	for _, st := range starts {
		if sh, ok := b.own[id][st.Unix()]; ok {
			out = append(out, sh)
		}
	}
	return out
}

// evaluateWindows starts the evaluation of every circuit whose written
// counts held trouble, as far as ctx leaves slots; a circuit stays to
// evaluate until its evaluation succeeds.
func (b *Breaker) evaluateWindows(ctx context.Context, run *flushRun) {
	now := b.o.Now()
	b.mu.Lock()
	var ids []string
	for id, next := range b.unevaluated {
		if !now.Before(next) {
			ids = append(ids, id)
		}
	}
	b.mu.Unlock()
	slices.Sort(ids)
	for _, id := range ids {
		started := spawn(ctx, run.sem, &run.work, func() {
			tripped, err := b.evaluate(ctx, id)
			if err != nil {
				run.add(err, nil)
				b.mu.Lock()
				if _, ok := b.unevaluated[id]; ok {
					b.unevaluated[id] = b.o.Now().Add(retryPause())
				}
				b.mu.Unlock()
				return
			}
			b.mu.Lock()
			delete(b.unevaluated, id)
			b.mu.Unlock()
			run.add(nil, func(res *FlushResult) {
				res.Evaluated++
				if tripped {
					res.Tripped++
				}
			})
		})
		if !started {
			return
		}
	}
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

// urgentRate says whether window counts w of circuit id reach the
// failure-rate or the slow-call-rate threshold.
func (b *Breaker) urgentRate(id string, w circuit.Counts) bool {
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

// evaluate reads the window of circuit id, every shard of its buckets
// (eventually consistent; this environment's own shards as its writes
// returned them when the read is behind), and trips it when the rate is
// reached, through store.Apply, whose read of the circuit is strongly
// consistent. A circuit the cache holds as not CLOSED is looked up in the
// cache again (which reads this environment's read copy when its value is
// older than the maximum age), since the cache may be behind the table
// (another sandbox's probe closed it meanwhile); it is skipped while the
// cache still holds it as not CLOSED. No strongly consistent read of the
// circuit item is made for that: while a circuit is OPEN every
// environment that wrote a bucket may evaluate, and at 10,000
// environments those reads alone took about a tenth of the item's read
// limit. A window skipped so is evaluated again with the next written
// bucket that holds trouble.
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
		cur := b.cache.Get(ctx, id).Circuit
		if cur.State != circuit.Closed && cur.State != "" {
			return false, nil // tripped as far as this environment knows: nothing to decide
		}
		cached = cur
	}
	pol := b.o.Policies.For(id)
	settings, rates := pol.Settings(), pol.Rates()
	now := b.o.Now()
	// Buckets that started before the circuit's last transition never
	// count (see circuit.WindowCounts): they are not read.
	starts := slices.DeleteFunc(WindowStarts(now, rates.Window), func(s time.Time) bool {
		return !cached.UpdatedAt.IsZero() && s.Before(cached.UpdatedAt)
	})
	if len(starts) == 0 {
		return false, nil
	}
	shards, err := st.GetBucketShards(ctx, id, starts)
	if err != nil {
		return false, fmt.Errorf("evaluate %q: %w", id, err)
	}
	buckets := store.SumShards(append(shards, b.ownShards(id, starts)...))
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

// retryPause is how long a bucket write or a window evaluation that failed
// (throttled, timed out) waits before it is tried again: 0.5 to 1.5 s,
// random, so that a fleet whose requests to one item were throttled does
// not retry them all at its next invocations, and not all at once.
func retryPause() time.Duration {
	return 500*time.Millisecond + rand.N(time.Second)
}
