package breaker

import (
	"context"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/cache"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
)

// Answer is the breaker's answer to a lookup: what the cache holds of the
// circuit, and the decision made from it.
type Answer struct {
	// Value is what the cache returned; Value.Circuit is replaced by the
	// circuit as stored when the lookup moved it (such as OPEN to
	// HALF_OPEN).
	cache.Value
	// State is the effective state at the time of the lookup. When the
	// failure policy decided with nothing known it is CLOSED for allow
	// and OPEN for deny.
	State circuit.State
	// Allowed says whether the caller may call the service.
	Allowed bool
	// FailModeApplied is true when the failure policy (Options.FailAllow)
	// decided Allowed, since the cached value expired or there was none.
	FailModeApplied bool
	// Probe is the token of the probe lease given to the caller, if any:
	// its call is a trial of a HALF_OPEN circuit.
	Probe string
}

// Lookup answers whether a caller may call service id now, from the
// cache (see cache.Cache.Get for when it waits on the table):
//
//   - when the cached value expired, or none could be read, the failure
//     policy decides;
//   - otherwise an active override decides (FORCED_CLOSED allows,
//     FORCED_OPEN denies); CLOSED allows;
//   - OPEN denies until retryAt; after it, a lookup whose cached value
//     was read (or written by this extension) at or after retryAt, and
//     after a delay drawn within a second after it, moves
//     the circuit to HALF_OPEN with a conditional transition (the first
//     such lookup in the fleet wins) and goes on as for HALF_OPEN; a
//     lookup whose value was read before that denies and writes
//     nothing (see cooldownUnconfirmed);
//   - HALF_OPEN allows only a lookup that claims one of the service's
//     HalfOpenProbes lease slots; the answer then carries the lease's
//     token (Answer.Probe). Everyone else is denied. After a move by a
//     cool-down end, an environment that took no part in it claims only
//     from a moment drawn within the probe timeout (see claimDeferred).
//
// The table writes of one lookup share one deadline, the claim timeout;
// see admit for what happens when they fail.
func (b *Breaker) Lookup(ctx context.Context, id string) Answer {
	a := b.answer(b.cache.Get(ctx, id))
	if !a.FailModeApplied && (b.cooldownUnconfirmed(a.Value) || b.claimDeferred(a.Value)) {
		// Not this lookup: the value may be older than a move to
		// HALF_OPEN made elsewhere since the cool-down ended, or this
		// environment's turn to claim a probe lease has not come.
		b.count(a)
		return a
	}
	if !a.FailModeApplied {
		ad := b.admit(ctx, a.Circuit, a.At)
		if ad.Circuit.ID != "" {
			a.Circuit = ad.Circuit
		}
		a.State = a.Circuit.EffectiveState(a.At)
		if ad.Local {
			a.State = circuit.Open // refused here, on this environment's own evidence
		}
		a.Allowed, a.Probe = ad.Allowed, ad.Probe
	}
	b.count(a)
	return a
}

// LookupMany answers for several circuits, in the order of ids, as Lookup
// does by the cached state alone: it never writes to the table, so it
// neither ends a cool-down nor claims a probe lease, and denies OPEN and
// HALF_OPEN circuits.
func (b *Breaker) LookupMany(ctx context.Context, ids []string) []Answer {
	vs := b.cache.GetMany(ctx, ids)
	out := make([]Answer, len(vs))
	for i, v := range vs {
		out[i] = b.answer(v)
		b.count(out[i])
	}
	return out
}

// answer decides from v alone: the failure policy when v expired,
// otherwise the effective state (only CLOSED allows).
func (b *Breaker) answer(v cache.Value) Answer {
	a := Answer{Value: v}
	if v.Expired {
		a.FailModeApplied = true
		a.Allowed = b.o.FailAllow
		switch {
		case v.Known:
			a.State = v.Circuit.EffectiveState(v.At)
		case a.Allowed:
			a.State = circuit.Closed
		default:
			a.State = circuit.Open
		}
		return a
	}
	a.State = v.Circuit.EffectiveState(v.At)
	a.Allowed = a.State == circuit.Closed
	return a
}

// moveSpread is the span over which the environments' own moments to
// try ending a cool-down are drawn: one refresh interval by default.
const moveSpread = time.Second

// cooldownUnconfirmed reports whether v shows an OPEN circuit whose
// cool-down is over at v.At, with no active override, from a read that
// started before this environment's own moment to try the move: retryAt
// plus a delay drawn at random within moveSpread, once per OPEN version.
// A value read before retryAt cannot tell whether another environment
// has already moved the circuit on, so the lookup denies and leaves the
// table alone: the cache's next refresh, within one refresh interval,
// shows either the move or that it is still to be made. Without this,
// every busy environment of a fleet would read the circuit item strongly
// in the first second after the cool-down, each on its own copy read up to
// a refresh interval earlier. With it, only the environments whose copy
// was read after their own moment and before the move try it; with
// moments and refreshes both spread over a second, n environments in the
// m seconds the move takes send about n × m² / 2 of those reads.
func (b *Breaker) cooldownUnconfirmed(v cache.Value) bool {
	c := v.Circuit
	if c.State != circuit.Open || c.ActiveOverride(v.At) != circuit.NoOverride || c.RetryAt.IsZero() || v.At.Before(c.RetryAt) {
		return false
	}
	b.mu.Lock()
	t, ok := b.moveAfter[c.ID]
	if !ok || t.version != c.Version {
		t = claimTicket{version: c.Version, at: c.RetryAt.Add(time.Duration(b.chance() * float64(moveSpread)))}
		b.moveAfter[c.ID] = t
	}
	b.mu.Unlock()
	return v.At.Add(-v.Age).Before(t.at)
}
