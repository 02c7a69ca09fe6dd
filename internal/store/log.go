package store

import (
	"context"
	"log/slog"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
)

// Log messages, stable so that log queries and tests can match them.
const (
	// MsgTransition is logged once per transition, by the winning writer,
	// with the attributes service, from, to, reason, version and at.
	MsgTransition = "circuit transition"
	// MsgTrialFailed is logged when a check after the cool-down fails and
	// the circuit stays OPEN for a longer cool-down (not a transition).
	MsgTrialFailed = "circuit trial failed"
	// MsgOverrideSet is logged when an operator sets an override.
	MsgOverrideSet = "circuit override set"
	// MsgOverrideCleared is logged when an operator clears an override.
	MsgOverrideCleared = "circuit override cleared"
	// MsgOverrideMigrated is logged when a legacy override on a circuit
	// item moves to the circuit's override item.
	MsgOverrideMigrated = "circuit override migrated"
	// MsgLegacyOverrideDropped is logged (a warning) when a circuit item
	// without an override item holds a legacy override attribute that is
	// no valid override: it is ignored, and never migrated.
	MsgLegacyOverrideDropped = "invalid legacy override dropped"
	// MsgUnreadableOverridden is logged (a warning) when a circuit item
	// cannot be decoded and its active override decides the circuit.
	MsgUnreadableOverridden = "circuit item unreadable; override decides"
	// MsgItemRewritten is logged (a warning) by the writer that rewrote a
	// circuit item that could not be decoded, with the attributes
	// service, error, state and version.
	MsgItemRewritten = "unreadable circuit item rewritten"
)

func (s *Store) logDecision(ctx context.Context, cur circuit.Circuit, d circuit.Decision) {
	next := d.Next
	switch {
	case d.Change == circuit.Transition:
		s.log().LogAttrs(ctx, slog.LevelInfo, MsgTransition,
			slog.String("service", next.ID),
			slog.String("from", string(cur.State)),
			slog.String("to", string(next.State)),
			slog.String("reason", next.Reason),
			slog.Int64("version", next.Version),
			slog.Time("at", next.UpdatedAt),
		)
	case cur.State == circuit.Open && next.OpenCount > cur.OpenCount:
		s.log().LogAttrs(ctx, slog.LevelInfo, MsgTrialFailed,
			slog.String("service", next.ID),
			slog.String("state", string(next.State)),
			slog.Int("openCount", next.OpenCount),
			slog.Time("retryAt", next.RetryAt),
			slog.Int64("version", next.Version),
		)
	}
}
