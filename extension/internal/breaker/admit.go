package breaker

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/cache"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
)

// admission is the decision of admit.
type admission struct {
	// Allowed says whether the caller may call the service.
	Allowed bool
	// Probe, when set, is the token of the probe lease the caller was
	// given.
	Probe string
	// Circuit, when its ID is set, is the circuit as stored after admit
	// moved it (such as OPEN to HALF_OPEN), or re-read it.
	Circuit circuit.Circuit
	// Local is true when this environment refuses a CLOSED circuit on
	// its own (see localTrip).
	Local bool
}

// admit decides for one caller of the known circuit c, at now, as Lookup
// describes. When the table writes fail or time out the caller is denied
// (the circuit is not CLOSED, so denying is safe), and lookups leave that
// circuit's items alone for busyRetry: at most one write attempt per
// circuit per interval, each a single request without SDK retries. A
// claim whose answer was lost is given back by its token in the
// background. After Stop, lookups write nothing and claim no lease.
func (b *Breaker) admit(ctx context.Context, c circuit.Circuit, now time.Time) admission {
	if c.ActiveOverride(now) == circuit.NoOverride && (c.State == circuit.Open || c.State == circuit.HalfOpen) {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), b.o.ClaimTimeout)
		defer cancel()
	}
	switch c.ActiveOverride(now) {
	case circuit.ForcedClosed:
		return admission{Allowed: true}
	case circuit.ForcedOpen:
		return admission{}
	}
	switch c.State {
	case circuit.Open:
		if c.RetryAt.IsZero() || now.Before(c.RetryAt) || b.stopped.Load() {
			return admission{}
		}
		next, ok := b.endCooldown(ctx, c, now)
		if !ok {
			return admission{}
		}
		if next.State != circuit.HalfOpen || next.ActiveOverride(now) != circuit.NoOverride {
			// Someone else moved it on, or an operator override came in
			// meanwhile: the stored circuit decides.
			return admission{Allowed: next.EffectiveState(now) == circuit.Closed, Circuit: next}
		}
		a := b.claim(ctx, next, now)
		if a.Circuit.ID == "" {
			a.Circuit = next
		}
		return a
	case circuit.HalfOpen:
		return b.claim(ctx, c, now)
	default:
		ok := b.localAdmit(c.ID, c, now)
		if ok {
			// A circuit that just closed lets the fleet's calls back
			// gradually (RecoveryRamp).
			if share := circuit.RampShare(c, b.o.Policies.For(c.ID).Rates().RecoveryRamp, now); share < 1 {
				return admission{Allowed: rand.Float64() < share}
			}
		}
		return admission{Allowed: ok, Local: !ok}
	}
}

// begin marks a table write for circuit id in progress; false when one is
// already running or lookups must leave the circuit alone until after now
// (see pause): the caller is denied rather than queued. Both are checked
// under one lock, so a pause set by a write that just failed holds for a
// lookup that was already on its way.
func (b *Breaker) begin(id string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if wait, ok := b.busy[id]; b.inflight[id] || ok && now.Before(wait) {
		return false
	}
	b.inflight[id] = true
	return true
}

func (b *Breaker) end(id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.inflight, id)
}

// endCooldown moves an OPEN circuit past its retryAt to HALF_OPEN with a
// conditional transition and returns the circuit as stored afterwards.
// When that fails, lookups leave the circuit alone for busyRetry.
func (b *Breaker) endCooldown(ctx context.Context, c circuit.Circuit, now time.Time) (circuit.Circuit, bool) {
	if !b.begin(c.ID, now) {
		return c, false
	}
	defer b.end(c.ID)
	st, err := b.lookupStore(ctx)
	if err == nil {
		var applied store.Applied
		applied, err = st.Apply(ctx, c.ID, func(cur circuit.Circuit) circuit.Decision {
			return circuit.DecideCooldownOver(cur, b.o.Now())
		})
		if err == nil {
			after := applied.After()
			b.put(after)
			if applied.Decision.Change == circuit.Transition && after.State == circuit.HalfOpen {
				// This environment made the move: it may claim at
				// once (see claimDeferred).
				b.mu.Lock()
				b.claimAfter[c.ID] = claimTicket{version: after.Version}
				b.mu.Unlock()
			}
			return after, true
		}
	}
	b.pause(c.ID, now.Add(b.busyRetry))
	b.o.Logger.Warn("ending cool-down failed; retrying after a pause", "service", c.ID, "pauseMs", b.busyRetry.Milliseconds(), "error", err.Error())
	return c, false
}

// probeTTL is the probe lease duration of circuit id.
func (b *Breaker) probeTTL(id string) time.Duration {
	if b.leaseTTL > 0 {
		return b.leaseTTL
	}
	return b.o.Policies.For(id).Passive.ProbeTimeout
}

// claimSpread is how many probe timeouts the moments at which
// environments other than the mover may first claim are spread over (see
// claimDeferred): four, so that at 10,000 environments and the default
// probe timeout of 10 s about 250 turns come in a second, a quarter of the
// lease item's write limit; a turn can cost two writes (a claim of a
// circuit that has meanwhile closed is given back).
const claimSpread = 4

// claimTicket is when this environment may first claim a probe lease of
// one HALF_OPEN version of a circuit.
type claimTicket struct {
	version int64
	at      time.Time
}

// claimDeferred reports whether v shows a circuit that a cool-down end
// moved to HALF_OPEN (circuit.ReasonCooldownOver), with no active
// override, whose probe lease this environment may not claim yet at v.At.
// The environment that made the move may claim at once (it claimed as it
// moved, and claims again for the next probe); every other environment
// waits until a moment drawn at
// random, once per HALF_OPEN version, within claimSpread probe timeouts after the
// move (the circuit's updatedAt). A refused claim is still a billed write
// of the lease item: without the wait, every busy environment whose copy
// shows HALF_OPEN claims within a refresh interval, which at 10,000
// environments and a probe call of 300 ms took the lease item to its write
// limit. With it, about n × d / (claimSpread × probeTimeout) of n other environments claim
// during the d the circuit stays HALF_OPEN, and the first of them soon
// after the move, so a circuit whose mover went quiet is still probed.
// A HALF_OPEN reached otherwise (the updater's check, an operator) is
// claimed by any environment at once, as before.
func (b *Breaker) claimDeferred(v cache.Value) bool {
	c := v.Circuit
	if c.State != circuit.HalfOpen || c.Reason != circuit.ReasonCooldownOver || c.ActiveOverride(v.At) != circuit.NoOverride {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	t, ok := b.claimAfter[c.ID]
	if !ok || t.version != c.Version {
		t = claimTicket{version: c.Version, at: c.UpdatedAt.Add(time.Duration(b.chance() * float64(claimSpread*b.probeTTL(c.ID))))}
		b.claimAfter[c.ID] = t
	}
	return v.At.Before(t.at)
}

// claim tries to take a probe lease of the HALF_OPEN circuit c.
func (b *Breaker) claim(ctx context.Context, c circuit.Circuit, now time.Time) admission {
	b.mu.Lock()
	for tok, l := range b.leases {
		if !now.Before(l.Until) {
			delete(b.leases, tok)
		}
	}
	b.mu.Unlock()
	if b.stopped.Load() {
		return admission{}
	}
	if !b.begin(c.ID, now) {
		return admission{}
	}
	defer b.end(c.ID)
	st, err := b.lookupStore(ctx)
	if err != nil {
		b.pause(c.ID, now.Add(b.busyRetry))
		b.o.Logger.Warn("claiming a probe lease failed", "service", c.ID, "error", err.Error())
		return admission{}
	}
	k, ttl := b.o.Policies.For(c.ID).Passive.HalfOpenProbes, b.probeTTL(c.ID)
	l, err := st.ClaimLease(ctx, c.ID, k, rand.IntN(k), b.o.Holder, c.Version, ttl, now)
	if err != nil {
		var be *store.BusyError
		retry := now.Add(b.busyRetry)
		if errors.As(err, &be) && !be.Until.IsZero() && be.Until.Before(retry) {
			retry = be.Until
		}
		b.pause(c.ID, retry)
		var uncertain *store.UncertainClaimError
		if errors.As(err, &uncertain) {
			// The claim may have been applied with its answer lost, or
			// still be on its way: a slot nobody holds would block every
			// sandbox until the lease expires. Give it back by its token.
			b.bg.Go(func() { b.releaseUncertain(ctx, uncertain.Lease) })
		}
		if !errors.Is(err, store.ErrLeaseBusy) {
			b.o.Logger.Warn("claiming a probe lease failed", "service", c.ID, "error", err.Error())
		}
		return admission{}
	}
	// The cached HALF_OPEN may be behind the table: a probe elsewhere may
	// have reopened or closed the circuit since it was read. The lease
	// guards only the version it was claimed for, so re-read the circuit
	// and give the lease back unless it is still that HALF_OPEN.
	cur, _, err := st.Get(ctx, c.ID)
	if err != nil || cur.State != circuit.HalfOpen || cur.Version != c.Version || cur.ActiveOverride(now) != circuit.NoOverride {
		if err != nil {
			b.pause(c.ID, now.Add(b.busyRetry))
			b.o.Logger.Warn("re-reading the circuit after a probe claim failed", "service", c.ID, "error", err.Error())
		} else {
			b.put(cur)
			b.o.Logger.Info("probe lease given back: the circuit moved on", "service", c.ID, "claimedVersion", c.Version, "version", cur.Version, "state", string(cur.State))
		}
		// Give the slot back without holding up the answer; should the
		// sandbox freeze first, the lease simply expires.
		b.bg.Go(func() { b.release(ctx, l) })
		if err != nil {
			return admission{}
		}
		// Only a CLOSED circuit admits without a lease; a newer
		// HALF_OPEN is left to the next lookup's claim.
		return admission{Allowed: cur.EffectiveState(now) == circuit.Closed, Circuit: cur}
	}
	b.mu.Lock()
	if b.stopped.Load() {
		// SHUTDOWN has settled the held leases already: this one would be
		// left to expire.
		b.mu.Unlock()
		b.bg.Go(func() { b.release(ctx, l) })
		return admission{}
	}
	b.leases[l.Token] = l
	delete(b.busy, c.ID)
	b.mu.Unlock()
	b.o.Logger.Info("probe lease claimed", "service", c.ID, "slot", l.Slot, "version", l.Version, "until", l.Until)
	return admission{Allowed: true, Probe: l.Token}
}

// takeLease removes and returns the lease with token tok held for id.
func (b *Breaker) takeLease(id, tok string) (store.Lease, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	l, ok := b.leases[tok]
	if !ok || l.ID != id {
		return store.Lease{}, false
	}
	delete(b.leases, tok)
	if !b.o.Now().Before(l.Until) {
		// Expired: another caller may hold the slot now; the outcome
		// counts as an ordinary one.
		return store.Lease{}, false
	}
	return l, true
}

// release gives lease l back for a lookup, with its own timeout so that a
// claim which used up its budget still frees the slot, in one attempt;
// failing that, it expires.
func (b *Breaker) release(ctx context.Context, l store.Lease) {
	b.released(l, b.releaseOnce(ctx, l))
}

// lateClaimWindow bounds how long the release of a claim whose answer was
// lost is tried again: the claim's request may still reach the table after
// the claimer gave up on it, but not much later.
const lateClaimWindow = 5 * time.Second

// releaseUncertain gives back lease l, claimed with an answer that was
// lost, as release does. Finding nothing to release (a conflict) may mean
// that the claim was never applied, or that its request is still on its
// way and lands after the release: the release is then tried again after
// growing pauses, until it applies, l would have expired anyway, or
// lateClaimWindow has passed. Once the breaker stops (SHUTDOWN), one last
// attempt is made at once.
func (b *Breaker) releaseUncertain(ctx context.Context, l store.Lease) {
	end := b.o.Now().Add(lateClaimWindow)
	if l.Until.Before(end) {
		end = l.Until
	}
	pause := 50 * time.Millisecond
	for {
		err := b.releaseOnce(ctx, l)
		if !errors.Is(err, store.ErrConflict) {
			b.released(l, err)
			return
		}
		if b.stopped.Load() || !b.o.Now().Add(pause).Before(end) {
			b.o.Logger.Debug("a lost probe claim was never applied, or landed too late to give back", "service", l.ID, "slot", l.Slot)
			return
		}
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-b.stopping:
			t.Stop()
		}
		pause *= 2
	}
}

// releaseOnce makes one attempt to give lease l back, within the claim
// timeout of its own.
func (b *Breaker) releaseOnce(ctx context.Context, l store.Lease) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.o.ClaimTimeout)
	defer cancel()
	st, err := b.lookupStore(ctx)
	if err != nil {
		return err
	}
	return st.ReleaseLease(ctx, l)
}

// releaseWithin gives lease l back within ctx.
func (b *Breaker) releaseWithin(ctx context.Context, l store.Lease) {
	st, err := b.store(ctx)
	if err == nil {
		err = st.ReleaseLease(ctx, l)
	}
	b.released(l, err)
}

// released logs a failed release; a lease no longer held by l's token
// (expired and claimed again, or never applied) is not a failure.
func (b *Breaker) released(l store.Lease, err error) {
	if err != nil && !errors.Is(err, store.ErrConflict) {
		b.o.Logger.Warn("releasing a probe lease failed; it expires by itself", "service", l.ID, "error", err.Error())
	}
}

// Abandon gives back the probe lease tok of circuit id that was handed to
// a caller who stopped waiting for the answer (its request was cancelled),
// so that the slot does not stay blocked until the lease expires. It
// reports whether such a lease was held.
func (b *Breaker) Abandon(ctx context.Context, id, tok string) bool {
	l, ok := b.takeLease(id, tok)
	if !ok {
		return false
	}
	b.o.Logger.Info("probe lease given back: the caller stopped waiting", "service", id, "slot", l.Slot)
	b.release(ctx, l)
	return true
}
