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
// An operator override (FORCED_OPEN or FORCED_CLOSED) wins over the state
// until it expires.
package circuit
