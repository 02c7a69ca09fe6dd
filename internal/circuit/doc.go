// Package circuit is the circuit-breaker state model shared by the
// extension, the updater and the operator tools.
//
// It has no AWS imports: it describes a circuit (one per monitored
// service), its states, operator overrides and the rules that move a
// circuit between states. Persisting a circuit is the job of package store.
//
// States follow the standard naming:
//
//	CLOSED     the service is healthy and calls flow
//	OPEN       the circuit tripped; callers use their local fallback
//	HALF_OPEN  a limited number of trial calls test the service
//
// Decide is the whole state machine: given the stored Circuit, the
// service's Settings, one CheckResult and the time, it returns the next
// record and whether the change is a Transition (a new state, written with
// version+1), a CounterUpdate (same state and version) or NoChange (no
// write at all). The defaults are 3 failures to open, a 30 s cool-down
// doubling with each opening up to 5 min, and 2 successes to close.
//
// An operator override (FORCED_OPEN or FORCED_CLOSED) wins over the state
// in EffectiveState and Allowed until it expires. Decide ignores overrides,
// so the state underneath stays current while one is in force.
package circuit
