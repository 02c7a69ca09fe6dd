package circuit

import (
	"fmt"
	"time"
)

// Counts are the outcomes of calls, summed over the fleet.
type Counts struct {
	// Calls is the number of calls.
	Calls int64
	// Failures is the number of failed calls.
	Failures int64
	// Slow is the number of calls at least SlowCallDuration long.
	Slow int64
	// Runs is the number of runs of FastTripFailures consecutive failed
	// calls that one execution environment saw; an environment counts a
	// run once, then starts afresh.
	Runs int64
}

// Add returns the sum of c and o.
func (c Counts) Add(o Counts) Counts {
	return Counts{Calls: c.Calls + o.Calls, Failures: c.Failures + o.Failures, Slow: c.Slow + o.Slow, Runs: c.Runs + o.Runs}
}

// Sub returns c minus o.
func (c Counts) Sub(o Counts) Counts {
	return Counts{Calls: c.Calls - o.Calls, Failures: c.Failures - o.Failures, Slow: c.Slow - o.Slow, Runs: c.Runs - o.Runs}
}

// IsZero reports whether nothing was counted.
func (c Counts) IsZero() bool { return c == Counts{} }

// Bucket holds the counts of calls that ended in one time bucket.
type Bucket struct {
	// Start is the start of the bucket.
	Start time.Time
	Counts
}

// WindowCounts sums the buckets that lie in the window ending at now and
// that started at or after the circuit's last transition: counts from
// before the circuit last closed never reopen it.
func WindowCounts(c Circuit, r RateSettings, buckets []Bucket, now time.Time) Counts {
	r = r.WithDefaults()
	from := now.Add(-r.Window)
	var sum Counts
	for _, b := range buckets {
		if b.Start.Before(from) || b.Start.After(now) {
			continue
		}
		if !c.UpdatedAt.IsZero() && b.Start.Before(c.UpdatedAt) {
			continue
		}
		sum = sum.Add(b.Counts)
	}
	return sum
}

// DecideRate decides on the fleet's calls over the sliding window. A
// CLOSED circuit opens when either rule holds:
//
//   - the rate rule: with at least MinimumCalls calls, the failure rate
//     reaches FailureRateThreshold (or the slow-call rate
//     SlowCallRateThreshold), and the counts are improbable for calls
//     failing at NullShare × that threshold (ImprobableRate);
//   - the runs rule: the runs of FastTripFailures consecutive failures the
//     environments counted are improbable for calls failing at NullShare ×
//     FailureRateThreshold (ImprobableRuns). This is how a hard failure
//     opens the circuit for the fleet within a second or two, while each
//     environment that saw a run already refuses on its own.
//
// Any other state, or evidence short of both rules, is NoChange: half-open
// circuits are decided by their probes, open ones by the cool-down.
func DecideRate(c Circuit, s Settings, r RateSettings, buckets []Bucket, now time.Time) Decision {
	s, r = s.WithDefaults(), r.WithDefaults()
	if c.State == "" {
		c.State = Closed
	}
	if c.State != Closed {
		return Decision{Change: NoChange, Next: c}
	}
	w := WindowCounts(c, r, buckets, now)
	if w.Calls == 0 {
		return Decision{Change: NoChange, Next: c}
	}
	p0 := NullShare * r.FailureRateThreshold / 100
	if ImprobableRuns(w.Calls, w.Runs, p0, r.FastTripFailures) {
		return open(c, s, now, fmt.Sprintf("%d runs of %d consecutive failed calls over %s (%d calls)", w.Runs, r.FastTripFailures, r.Window, w.Calls))
	}
	if w.Calls < int64(r.MinimumCalls) {
		return Decision{Change: NoChange, Next: c}
	}
	failRate := 100 * float64(w.Failures) / float64(w.Calls)
	slowRate := 100 * float64(w.Slow) / float64(w.Calls)
	switch {
	case failRate >= r.FailureRateThreshold && ImprobableRate(w.Calls, w.Failures, p0):
		return open(c, s, now, fmt.Sprintf("failure rate %.0f%% over %s (%d calls)", failRate, r.Window, w.Calls))
	case slowRate >= r.SlowCallRateThreshold && ImprobableRate(w.Calls, w.Slow, NullShare*r.SlowCallRateThreshold/100):
		return open(c, s, now, fmt.Sprintf("slow-call rate %.0f%% over %s (%d calls, slow from %s)", slowRate, r.Window, w.Calls, r.SlowCallDuration))
	}
	return Decision{Change: NoChange, Next: c}
}

// ReasonCooldownOver is the reason DecideCooldownOver gives its move to
// HALF_OPEN.
const ReasonCooldownOver = "cool-down over: probe calls allowed"

// DecideCooldownOver moves an OPEN circuit whose cool-down has passed to
// HALF_OPEN with no success counted yet, so that probe calls can decide.
// It is how a caller, rather than the next health check, ends a cool-down.
// Any other case is NoChange.
func DecideCooldownOver(c Circuit, now time.Time) Decision {
	if c.State != Open || c.RetryAt.IsZero() || now.Before(c.RetryAt) {
		return Decision{Change: NoChange, Next: c}
	}
	next := transition(c, HalfOpen, now, ReasonCooldownOver)
	next.RetryAt = time.Time{}
	return Decision{Change: Transition, Next: next}
}

// DecideProbe applies the outcome of a probe call made under a lease taken
// at version leaseVersion: it counts as a check while the circuit is still
// HALF_OPEN at that version (successes close it at SuccessThreshold, a
// failure reopens it), and is ignored otherwise.
func DecideProbe(c Circuit, s Settings, leaseVersion int64, r CheckResult, now time.Time) Decision {
	if c.State != HalfOpen || c.Version != leaseVersion {
		return Decision{Change: NoChange, Next: c}
	}
	return Decide(c, s, r, now)
}
