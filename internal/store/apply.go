package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
)

// DefaultMaxAttempts bounds the read-decide-write rounds of Apply. Losing a
// round needs another writer to win one, so the bound is only reached under
// heavy contention on one circuit.
const DefaultMaxAttempts = 50

// ErrContention means Apply lost every round to other writers.
var ErrContention = errors.New("store: too many concurrent writers")

// Decider decides the next record from the current one; it is called again
// with a fresh read after every lost race. It is usually a closure over
// circuit.Decide.
type Decider func(cur circuit.Circuit) circuit.Decision

// Applied describes what Apply did.
type Applied struct {
	// Before is the record the winning decision was made on.
	Before circuit.Circuit
	// Decision is the decision that was written (or that needed no write).
	Decision circuit.Decision
	// Found reports whether the circuit item existed when last read.
	Found bool
	// OverrideStored reports whether the circuit item held the override
	// attribute when last read; when it did not, see MigrateOverride.
	OverrideStored bool
	// ReadCopies is the circuit item's number of read copies when last
	// read (see SyncCopies).
	ReadCopies int
	// Reads and Writes count the DynamoDB calls made, including lost
	// conditional writes.
	Reads, Writes int
	// Rewritten is why the circuit item could not be decoded, when Apply
	// rewrote it (see Apply); nil otherwise.
	Rewritten error
}

// After is the record as it is stored once Apply returns.
func (a Applied) After() circuit.Circuit { return a.Decision.Next }

// Apply reads circuit id (strongly consistent), asks decide for the next
// record and writes it conditionally on what it read. When another writer
// changed the item in between, it re-reads and decides again, up to the
// store's attempt bound, sleeping a few random milliseconds between rounds.
//
// A NoChange decision costs one read and no write. A transition is logged
// as one JSON line by the writer that won it, and only by that writer.
//
// A circuit item that cannot be decoded (see Read.Unreadable) is decided
// on what could be salvaged from it and rewritten whatever the decision,
// a NoChange becoming a CounterUpdate: every attribute of the state
// machine is written, on the condition that the item still holds what was
// read. The writer that rewrote it logs MsgItemRewritten (a warning) and
// reports it in Applied.Rewritten.
func (s *Store) Apply(ctx context.Context, id string, decide Decider) (Applied, error) {
	var a Applied
	for attempt := 1; attempt <= s.maxAttempts; attempt++ {
		r, err := s.read(ctx, id)
		a.Reads++
		if err != nil {
			return a, err
		}
		cur := r.Circuit
		d := decide(cur)
		if r.Unreadable != nil && d.Change == circuit.NoChange {
			d.Change = circuit.CounterUpdate
		}
		a.Before, a.Decision, a.Found, a.OverrideStored, a.ReadCopies = cur, d, r.Found, r.OverrideStored, r.ReadCopies
		if d.Change == circuit.NoChange {
			return a, nil
		}
		a.Writes++
		err = s.write(ctx, cur, d.Next, d.Change, r.raw, r.ReadCopies)
		if err == nil {
			if r.Unreadable != nil {
				a.Rewritten = r.Unreadable
				s.log().LogAttrs(ctx, slog.LevelWarn, MsgItemRewritten,
					slog.String("service", id),
					slog.String("error", r.Unreadable.Error()),
					slog.String("state", string(d.Next.State)),
					slog.Int64("version", d.Next.Version),
				)
			}
			s.logDecision(ctx, cur, d)
			return a, nil
		}
		if !errors.Is(err, ErrConflict) {
			return a, err
		}
		if err := sleep(ctx, backoff(attempt)); err != nil {
			return a, fmt.Errorf("store: apply to circuit %q: %w", id, err)
		}
	}
	return a, fmt.Errorf("store: apply to circuit %q: lost %d rounds: %w", id, s.maxAttempts, ErrContention)
}

// backoff is a random pause of up to 1 ms per lost round, capped at 20 ms.
func backoff(attempt int) time.Duration {
	ceiling := time.Duration(min(attempt, 20)) * time.Millisecond
	return rand.N(ceiling) + time.Millisecond/10
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
