package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
)

// OverrideAttribute is the map attribute of a circuit item that holds the
// operator override (documented in docs/state-model.md). Attached
// functions may write their circuit items, but only the attributes of
// ExtensionWritableAttributes (an IAM condition on dynamodb:Attributes):
// this one is out of their reach.
const OverrideAttribute = "operatorOverride"

// Legacy override attributes: earlier versions kept the override in these
// top-level attributes of the circuit item, and later in an override item
// "<id>#override". Both are read only while the circuit item has no
// OverrideAttribute, and moved into it by MigrateOverride.
var legacyOverrideAttributes = []string{"override", "overrideReason", "overrideUntil", "overrideAt"}

// ProtectedAttributes are attributes of circuit items (and their read
// copies) that attached functions must never write: the operator
// override, its legacy top-level attributes, the table's TTL attribute
// (which would let DynamoDB delete the circuit item, and its override with
// it), and the number of read copies. None is in
// ExtensionWritableAttributes, the list the construct's grant allows, and
// the extension's writes never name them.
var ProtectedAttributes = []string{OverrideAttribute, "override", "overrideReason", "overrideUntil", "overrideAt", TTLAttribute, ReadCopiesAttribute}

// ExtensionWritableAttributes are the only attributes an attached
// function's extension names in its writes of circuit items and read
// copies (Write and the copy writes after it: the state machine's
// attributes, its revision, the write tokens, and the key, in copies'
// conditions). The construct's grant for attached functions lists exactly
// these in a ForAllValues:StringEquals condition on dynamodb:Attributes
// (the key included, as IAM requires in such a list), so an attached
// function can set no other attribute: not the override, nor one that
// would pad the item towards DynamoDB's 400 KB limit.
var ExtensionWritableAttributes = []string{
	KeyAttribute, "state", "version", "failures", "successes", "openCount", "retryAt",
	"updatedAt", "previousState", "reason", StateRevAttribute, WriteTokenAttribute, PriorWriteTokenAttribute,
}

// overrideMap is the layout of OverrideAttribute. Times are Unix
// milliseconds. Rev goes up by one with every write of the map.
type overrideMap struct {
	Override  string `dynamodbav:"override,omitempty"`
	Reason    string `dynamodbav:"reason,omitempty"`
	Until     int64  `dynamodbav:"until,omitempty"`
	At        int64  `dynamodbav:"at,omitempty"`
	ClearedAt int64  `dynamodbav:"clearedAt,omitempty"`
	Rev       int64  `dynamodbav:"rev"`
}

// overrideRecord is the layout of a legacy override item "<id>#override".
type overrideRecord struct {
	ID             string `dynamodbav:"id"`
	Override       string `dynamodbav:"override,omitempty"`
	OverrideReason string `dynamodbav:"overrideReason,omitempty"`
	OverrideUntil  int64  `dynamodbav:"overrideUntil,omitempty"`
	OverrideAt     int64  `dynamodbav:"overrideAt,omitempty"`
	ClearedAt      int64  `dynamodbav:"clearedAt,omitempty"`
	CircuitState   string `dynamodbav:"circuitState,omitempty"`
}

// OverrideItem is a decoded operator override: a circuit item's
// OverrideAttribute, or a legacy override item. One without an override
// (cleared, or created by the migration) still counts: while it exists,
// older places of the override are ignored.
type OverrideItem struct {
	// ID is the service ID.
	ID string
	// Override is the operator override, or NoOverride.
	Override circuit.Override
	// Reason, Until and At are the override's reason, expiry (zero:
	// never) and when it was set.
	Reason    string
	Until, At time.Time
	// ClearedAt is when an operator last cleared an override.
	ClearedAt time.Time
	// Rev counts the writes of the override (zero for a legacy override
	// item).
	Rev int64
	// CircuitState is, for a legacy override item, the circuit's own
	// state when the item was last written.
	CircuitState circuit.State
}

// DecodeOverride decodes a legacy override item "<id>#override".
func DecodeOverride(item map[string]types.AttributeValue) (OverrideItem, error) {
	var r overrideRecord
	if err := attributevalue.UnmarshalMap(item, &r); err != nil {
		return OverrideItem{}, fmt.Errorf("store: decode override item: %w", err)
	}
	id, kind, err := ParseKey(r.ID)
	if err != nil || kind != KindOverride {
		return OverrideItem{}, fmt.Errorf("store: decode override item: key %q is not an override key", r.ID)
	}
	o := OverrideItem{
		ID:           id,
		Override:     circuit.Override(r.Override),
		Reason:       r.OverrideReason,
		Until:        fromMillis(r.OverrideUntil),
		At:           fromMillis(r.OverrideAt),
		ClearedAt:    fromMillis(r.ClearedAt),
		CircuitState: circuit.State(r.CircuitState),
	}
	if o.Override != circuit.NoOverride && !o.Override.Valid() {
		return OverrideItem{}, fmt.Errorf("store: override of %q: unknown override %q", id, o.Override)
	}
	return o, nil
}

// DecodeOverrideAttribute decodes the OverrideAttribute of a circuit item
// (or of one of its read copies): found is false when the item has none.
// Legacy override attributes are not read.
func DecodeOverrideAttribute(item map[string]types.AttributeValue) (o OverrideItem, found bool, err error) {
	v, ok := item[OverrideAttribute]
	if !ok {
		return OverrideItem{}, false, nil
	}
	var m overrideMap
	if err := attributevalue.Unmarshal(v, &m); err != nil {
		return OverrideItem{}, true, fmt.Errorf("store: decode %s: %w", OverrideAttribute, err)
	}
	o = OverrideItem{
		Override:  circuit.Override(m.Override),
		Reason:    m.Reason,
		Until:     fromMillis(m.Until),
		At:        fromMillis(m.At),
		ClearedAt: fromMillis(m.ClearedAt),
		Rev:       m.Rev,
	}
	if k, ok := item[KeyAttribute].(*types.AttributeValueMemberS); ok {
		o.ID, _, _ = ParseKey(k.Value)
	}
	if o.Override != circuit.NoOverride && !o.Override.Valid() {
		return OverrideItem{}, true, fmt.Errorf("store: decode %s: unknown override %q", OverrideAttribute, o.Override)
	}
	return o, true, nil
}

// encode is o as OverrideAttribute's value.
func (o OverrideItem) encode() (types.AttributeValue, error) {
	v, err := attributevalue.Marshal(overrideMap{
		Override:  string(o.Override),
		Reason:    o.Reason,
		Until:     toMillis(o.Until),
		At:        toMillis(o.At),
		ClearedAt: toMillis(o.ClearedAt),
		Rev:       o.Rev,
	})
	if err != nil {
		return nil, fmt.Errorf("store: encode override of %q: %w", o.ID, err)
	}
	return v, nil
}

// applyTo replaces the override fields of c with o's.
func (o OverrideItem) applyTo(c *circuit.Circuit) {
	c.Override, c.OverrideReason, c.OverrideUntil, c.OverrideAt = o.Override, o.Reason, o.Until, o.At
}

// SetOverride sets an operator override on circuit id, replacing any
// earlier one, and returns the circuit with it. until is when it expires
// (the zero time: never); now is the time of the request, recorded as
// overrideAt. It writes only the circuit item's OverrideAttribute (and
// removes legacy override attributes), so the state machine's attributes
// are untouched: the override neither bumps the version nor loses a
// concurrent transition. The write is conditioned on the override read
// (its revision), and read again after a lost race, so that every
// override write gets the next revision; the last write wins.
func (s *Store) SetOverride(ctx context.Context, id string, o circuit.Override, reason string, until, now time.Time) (circuit.Circuit, error) {
	if err := circuit.ValidateID(id); err != nil {
		return circuit.Circuit{}, fmt.Errorf("store: set override: %w", err)
	}
	if err := circuit.ValidateOverride(o, reason, until, now); err != nil {
		return circuit.Circuit{}, fmt.Errorf("store: set override on %q: %w", id, err)
	}
	for attempt := 1; ; attempt++ {
		cur, err := s.read(ctx, id)
		if err != nil {
			return circuit.Circuit{}, err
		}
		ov := OverrideItem{ID: id, Override: o, Reason: reason, Until: until, At: now, ClearedAt: cur.override.ClearedAt}
		err = s.writeOverride(ctx, cur, ov)
		if errors.Is(err, ErrConflict) && attempt < s.maxAttempts {
			if err := sleep(ctx, backoff(attempt)); err != nil {
				return circuit.Circuit{}, fmt.Errorf("store: set override on %q: %w", id, err)
			}
			continue
		}
		if err != nil {
			return circuit.Circuit{}, fmt.Errorf("store: set override %s on %q: %w", o, id, err)
		}
		c := cur.Circuit
		ov.applyTo(&c)
		attrs := []slog.Attr{
			slog.String("service", id),
			slog.String("override", string(o)),
			slog.String("reason", reason),
			slog.Time("at", now),
		}
		if !until.IsZero() {
			attrs = append(attrs, slog.Time("until", until))
		}
		s.log().LogAttrs(ctx, slog.LevelInfo, MsgOverrideSet, attrs...)
		return c, nil
	}
}

// ClearOverride removes the operator override of circuit id and returns
// the circuit and whether there was an override to clear (an expired one,
// or an invalid legacy one, counts). Clearing a circuit with no override
// writes nothing.
func (s *Store) ClearOverride(ctx context.Context, id string, now time.Time) (c circuit.Circuit, cleared bool, err error) {
	if err := circuit.ValidateID(id); err != nil {
		return circuit.Circuit{}, false, fmt.Errorf("store: clear override: %w", err)
	}
	for attempt := 1; ; attempt++ {
		cur, err := s.read(ctx, id)
		if err != nil {
			return circuit.Circuit{}, false, err
		}
		c = cur.Circuit
		old := c.Override
		if old == circuit.NoOverride {
			old = circuit.Override(cur.DroppedOverride)
		}
		if old == circuit.NoOverride && !cur.overrideBroken {
			return c, false, nil
		}
		err = s.writeOverride(ctx, cur, OverrideItem{ID: id, ClearedAt: now})
		if errors.Is(err, ErrConflict) && attempt < s.maxAttempts {
			if err := sleep(ctx, backoff(attempt)); err != nil {
				return circuit.Circuit{}, false, fmt.Errorf("store: clear override on %q: %w", id, err)
			}
			continue
		}
		if err != nil {
			return circuit.Circuit{}, false, fmt.Errorf("store: clear override on %q: %w", id, err)
		}
		s.log().LogAttrs(ctx, slog.LevelInfo, MsgOverrideCleared,
			slog.String("service", id),
			slog.String("override", string(old)),
			slog.Time("at", now),
		)
		c.Override, c.OverrideReason, c.OverrideUntil, c.OverrideAt = circuit.NoOverride, "", time.Time{}, time.Time{}
		return c, true, nil
	}
}

// MigrateOverride moves the override of circuit id from where earlier
// versions kept it (the override item "<id>#override", or else the
// legacy attributes of the circuit item) into the circuit item's
// OverrideAttribute, and removes the legacy attributes. A circuit item
// that already has the attribute is left alone (the override there was
// set later and wins), as is the old override item, which is never read
// again. It creates the attribute, without an override, when there is
// nothing to move. It reports whether it wrote.
func (s *Store) MigrateOverride(ctx context.Context, id string, now time.Time) (bool, error) {
	cur, err := s.read(ctx, id)
	if err != nil {
		return false, err
	}
	if cur.OverrideStored {
		return false, nil
	}
	ov := cur.override
	ov.ID = id
	cur.Circuit.Override, cur.Circuit.OverrideReason, cur.Circuit.OverrideUntil, cur.Circuit.OverrideAt = ov.Override, ov.Reason, ov.Until, ov.At
	if err := s.writeOverride(ctx, cur, ov); err != nil {
		if errors.Is(err, ErrConflict) {
			return false, nil
		}
		return false, fmt.Errorf("store: migrate override of %q: %w", id, err)
	}
	if ov.Override != circuit.NoOverride {
		s.log().LogAttrs(ctx, slog.LevelInfo, MsgOverrideMigrated,
			slog.String("service", id),
			slog.String("override", string(ov.Override)),
			slog.Time("at", now),
		)
	}
	return true, nil
}

// writeOverride writes ov, at the revision after cur's, as the
// OverrideAttribute of cur's circuit item, on the condition that the
// attribute's revision is still the one read (or that the attribute still
// does not exist). It removes the legacy override attributes, and gives
// an item that has no state the state CLOSED, which it would read as
// anyway. A lost race is ErrConflict.
func (s *Store) writeOverride(ctx context.Context, cur Read, ov OverrideItem) error {
	id := cur.Circuit.ID
	ov.Rev = cur.override.Rev + 1
	v, err := ov.encode()
	if err != nil {
		return err
	}
	e := newExpr()
	e.set(OverrideAttribute, v)
	st := e.name("state")
	e.sets = append(e.sets, st+" = if_not_exists("+st+", "+e.value(&types.AttributeValueMemberS{Value: string(circuit.Closed)})+")")
	for _, a := range legacyOverrideAttributes {
		e.remove(a)
	}
	switch {
	case cur.overrideBroken:
		// Written by hand: any revision is replaced.
		e.conds = append(e.conds, "attribute_exists("+e.name(OverrideAttribute)+")")
	case cur.OverrideStored:
		rev := e.name(OverrideAttribute) + "." + e.name("rev")
		e.conds = append(e.conds, rev+" = "+e.value(num(cur.override.Rev)))
		if cur.override.Rev == 0 {
			e.conds = []string{"(attribute_not_exists(" + rev + ") OR " + rev + " = " + e.value(num(0)) + ")"}
		}
	default:
		e.conds = append(e.conds, "attribute_not_exists("+e.name(OverrideAttribute)+")")
	}
	_, err = s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(s.table),
		Key:                       key(id),
		UpdateExpression:          aws.String(e.update()),
		ConditionExpression:       aws.String(e.condition()),
		ExpressionAttributeNames:  e.names,
		ExpressionAttributeValues: e.values,
	}, s.callOpts...)
	if err != nil {
		var ccf *types.ConditionalCheckFailedException
		if errors.As(err, &ccf) {
			return fmt.Errorf("store: write override of %q: %w", id, ErrConflict)
		}
		return fmt.Errorf("store: write override of %q: %w", id, err)
	}
	if cur.ReadCopies > 1 {
		s.copyOverrideWrites(ctx, id, v, ov.Rev, cur.ReadCopies)
	}
	return nil
}
