package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
)

// Override attributes. An override item holds them; a circuit item
// written by earlier versions may hold them too (the legacy layout, read
// only while the circuit has no override item; see Get).
var legacyOverrideAttributes = []string{"override", "overrideReason", "overrideUntil", "overrideAt"}

// overrideRecord is the item layout of an override item (documented in
// docs/state-model.md). Times are Unix milliseconds.
type overrideRecord struct {
	ID             string `dynamodbav:"id"`
	Kind           string `dynamodbav:"kind"`
	Override       string `dynamodbav:"override,omitempty"`
	OverrideReason string `dynamodbav:"overrideReason,omitempty"`
	OverrideUntil  int64  `dynamodbav:"overrideUntil,omitempty"`
	OverrideAt     int64  `dynamodbav:"overrideAt,omitempty"`
	ClearedAt      int64  `dynamodbav:"clearedAt,omitempty"`
	CircuitState   string `dynamodbav:"circuitState,omitempty"`
}

// OverrideItem is a decoded override item. An item without an override
// (cleared, or created when the circuit was first checked) still counts:
// while it exists, override attributes on the circuit item are ignored.
type OverrideItem struct {
	// ID is the service ID (not the item's key).
	ID string
	// Override is the operator override, or NoOverride.
	Override circuit.Override
	// Reason, Until and At are the override's reason, expiry (zero:
	// never) and when it was set.
	Reason    string
	Until, At time.Time
	// ClearedAt is when an operator last cleared an override.
	ClearedAt time.Time
	// CircuitState is the circuit's own state when the item was last
	// written, for the change event.
	CircuitState circuit.State
}

// DecodeOverride turns an override item into an OverrideItem.
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

// EncodeOverride turns the override fields of c into c's override item.
func EncodeOverride(c circuit.Circuit) (map[string]types.AttributeValue, error) {
	item, err := attributevalue.MarshalMap(overrideRecord{
		ID:             OverrideKey(c.ID),
		Kind:           string(KindOverride),
		Override:       string(c.Override),
		OverrideReason: c.OverrideReason,
		OverrideUntil:  toMillis(c.OverrideUntil),
		OverrideAt:     toMillis(c.OverrideAt),
		CircuitState:   string(c.State),
	})
	if err != nil {
		return nil, fmt.Errorf("store: encode override of %q: %w", c.ID, err)
	}
	return item, nil
}

// applyTo replaces the override fields of c with o's.
func (o OverrideItem) applyTo(c *circuit.Circuit) {
	c.Override, c.OverrideReason, c.OverrideUntil, c.OverrideAt = o.Override, o.Reason, o.Until, o.At
}

// SetOverride sets an operator override on circuit id, replacing any
// earlier one, and returns the circuit with it. until is when it expires
// (the zero time: never); now is the time of the request, recorded as
// overrideAt. It writes only the override item "<id>#override", so the
// state machine's attributes are untouched: the override neither bumps the
// version nor loses a concurrent transition. A legacy override on the
// circuit item is migrated first.
func (s *Store) SetOverride(ctx context.Context, id string, o circuit.Override, reason string, until, now time.Time) (circuit.Circuit, error) {
	if err := circuit.ValidateID(id); err != nil {
		return circuit.Circuit{}, fmt.Errorf("store: set override: %w", err)
	}
	if err := circuit.ValidateOverride(o, reason, until, now); err != nil {
		return circuit.Circuit{}, fmt.Errorf("store: set override on %q: %w", id, err)
	}
	cur, err := s.read(ctx, id)
	if err != nil {
		return circuit.Circuit{}, err
	}
	if !cur.OverrideStored && cur.Circuit.Override != circuit.NoOverride {
		if _, err := s.MigrateOverride(ctx, cur.Circuit, now); err != nil {
			return circuit.Circuit{}, err
		}
	}
	e := newExpr()
	e.set("kind", &types.AttributeValueMemberS{Value: string(KindOverride)})
	e.set("override", &types.AttributeValueMemberS{Value: string(o)})
	e.set("overrideReason", &types.AttributeValueMemberS{Value: reason})
	e.set("overrideAt", num(toMillis(now)))
	e.set("circuitState", &types.AttributeValueMemberS{Value: string(cur.Circuit.State)})
	e.setOrRemove("overrideUntil", toMillis(until))
	out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(s.table),
		Key:                       key(OverrideKey(id)),
		UpdateExpression:          aws.String(e.update()),
		ExpressionAttributeNames:  e.names,
		ExpressionAttributeValues: e.values,
		ReturnValues:              types.ReturnValueAllNew,
	})
	if err != nil {
		return circuit.Circuit{}, fmt.Errorf("store: set override %s on %q: %w", o, id, err)
	}
	ov, err := DecodeOverride(out.Attributes)
	if err != nil {
		return circuit.Circuit{}, err
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

// ClearOverride removes the operator override of circuit id and returns
// the circuit and whether there was an override to clear (an expired one
// counts). The override item stays, without an override, so that a legacy
// override on the circuit item is never read again. Clearing a circuit
// with no override writes nothing, except for the refused conditional
// write when the circuit has an override item.
func (s *Store) ClearOverride(ctx context.Context, id string, now time.Time) (c circuit.Circuit, cleared bool, err error) {
	if err := circuit.ValidateID(id); err != nil {
		return circuit.Circuit{}, false, fmt.Errorf("store: clear override: %w", err)
	}
	cur, err := s.read(ctx, id)
	if err != nil {
		return circuit.Circuit{}, false, err
	}
	c = cur.Circuit
	if !cur.OverrideStored {
		if cur.DroppedOverride != "" {
			// An invalid legacy override: create the override item, so
			// that the attributes are never read again, and remove them.
			if _, err := s.migrate(ctx, c, true, now); err != nil {
				return circuit.Circuit{}, false, err
			}
			s.log().LogAttrs(ctx, slog.LevelInfo, MsgOverrideCleared,
				slog.String("service", id),
				slog.String("override", cur.DroppedOverride),
				slog.Time("at", now),
			)
			return c, true, nil
		}
		if c.Override == circuit.NoOverride {
			return c, false, nil
		}
		if _, err := s.MigrateOverride(ctx, c, now); err != nil {
			return circuit.Circuit{}, false, err
		}
	}
	e := newExpr()
	for _, a := range legacyOverrideAttributes {
		e.remove(a)
	}
	e.set("clearedAt", num(toMillis(now)))
	e.set("circuitState", &types.AttributeValueMemberS{Value: string(c.State)})
	cond := "attribute_exists(" + e.name("override") + ")"
	out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(s.table),
		Key:                       key(OverrideKey(id)),
		UpdateExpression:          aws.String(e.update()),
		ConditionExpression:       aws.String(cond),
		ExpressionAttributeNames:  e.names,
		ExpressionAttributeValues: e.values,
		ReturnValues:              types.ReturnValueAllOld,
	})
	if err != nil {
		var ccf *types.ConditionalCheckFailedException
		if errors.As(err, &ccf) {
			c.Override, c.OverrideReason, c.OverrideUntil, c.OverrideAt = circuit.NoOverride, "", time.Time{}, time.Time{}
			return c, false, nil
		}
		return circuit.Circuit{}, false, fmt.Errorf("store: clear override on %q: %w", id, err)
	}
	old, err := DecodeOverride(out.Attributes)
	if err != nil {
		return circuit.Circuit{}, false, err
	}
	s.log().LogAttrs(ctx, slog.LevelInfo, MsgOverrideCleared,
		slog.String("service", id),
		slog.String("override", string(old.Override)),
		slog.Time("at", now),
	)
	c.Override, c.OverrideReason, c.OverrideUntil, c.OverrideAt = circuit.NoOverride, "", time.Time{}, time.Time{}
	return c, true, nil
}

// MigrateOverride creates the override item of circuit c when it has none,
// holding the legacy override that c was read with (or no override), and
// then removes the legacy override attributes from the circuit item. From
// then on the circuit item's override attributes are ignored, whoever
// writes them. It reports whether it created the item; when another
// writer created it first, it changes nothing.
//
// A legacy override attribute that holds no valid override is not
// migrated: c, as read, has no override, and the item is created without
// one (see Read.DroppedOverride).
func (s *Store) MigrateOverride(ctx context.Context, c circuit.Circuit, now time.Time) (bool, error) {
	return s.migrate(ctx, c, c.Override != circuit.NoOverride, now)
}

// migrate is MigrateOverride; it removes the legacy override attributes
// from the circuit item after creating the override item when
// removeLegacy is set.
func (s *Store) migrate(ctx context.Context, c circuit.Circuit, removeLegacy bool, now time.Time) (bool, error) {
	item, err := EncodeOverride(c)
	if err != nil {
		return false, err
	}
	// UpdateItem rather than PutItem, so that no role needs PutItem.
	attrs := make([]string, 0, len(item))
	for a := range item {
		if a != KeyAttribute {
			attrs = append(attrs, a)
		}
	}
	sort.Strings(attrs)
	e := newExpr()
	for _, a := range attrs {
		e.set(a, item[a])
	}
	_, err = s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(s.table),
		Key:                       key(OverrideKey(c.ID)),
		UpdateExpression:          aws.String(e.update()),
		ConditionExpression:       aws.String("attribute_not_exists(" + e.name(KeyAttribute) + ")"),
		ExpressionAttributeNames:  e.names,
		ExpressionAttributeValues: e.values,
	})
	if err != nil {
		var ccf *types.ConditionalCheckFailedException
		if errors.As(err, &ccf) {
			return false, nil
		}
		return false, fmt.Errorf("store: create override item of %q: %w", c.ID, err)
	}
	if !removeLegacy {
		return true, nil
	}
	e = newExpr()
	for _, a := range legacyOverrideAttributes {
		e.remove(a)
	}
	_, err = s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                aws.String(s.table),
		Key:                      key(c.ID),
		UpdateExpression:         aws.String(e.update()),
		ConditionExpression:      aws.String("attribute_exists(" + e.name("override") + ")"),
		ExpressionAttributeNames: e.names,
	})
	var ccf *types.ConditionalCheckFailedException
	if err != nil && !errors.As(err, &ccf) {
		return true, fmt.Errorf("store: remove legacy override attributes of %q: %w", c.ID, err)
	}
	if c.Override == circuit.NoOverride {
		return true, nil
	}
	s.log().LogAttrs(ctx, slog.LevelInfo, MsgOverrideMigrated,
		slog.String("service", c.ID),
		slog.String("override", string(c.Override)),
		slog.Time("at", now),
	)
	return true, nil
}
