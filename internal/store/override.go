package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
)

// SetOverride sets an operator override on circuit id, replacing any
// earlier one, and returns the stored circuit. until is when it expires
// (the zero time: never); now is the time of the request, recorded as
// overrideAt. The state-machine attributes are left alone (created as a new
// CLOSED circuit at version 0 when the item does not exist), so the
// override neither bumps the version nor loses a concurrent transition.
func (s *Store) SetOverride(ctx context.Context, id string, o circuit.Override, reason string, until, now time.Time) (circuit.Circuit, error) {
	if err := circuit.ValidateID(id); err != nil {
		return circuit.Circuit{}, fmt.Errorf("store: set override: %w", err)
	}
	if err := circuit.ValidateOverride(o, reason, until, now); err != nil {
		return circuit.Circuit{}, fmt.Errorf("store: set override on %q: %w", id, err)
	}
	e := newExpr()
	e.set("override", &types.AttributeValueMemberS{Value: string(o)})
	e.set("overrideReason", &types.AttributeValueMemberS{Value: reason})
	e.set("overrideAt", num(toMillis(now)))
	e.setOrRemove("overrideUntil", toMillis(until))
	e.setIfAbsent("state", &types.AttributeValueMemberS{Value: string(circuit.Closed)})
	e.setIfAbsent("version", num(0))
	out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(s.table),
		Key:                       key(id),
		UpdateExpression:          aws.String(e.update()),
		ExpressionAttributeNames:  e.names,
		ExpressionAttributeValues: e.values,
		ReturnValues:              types.ReturnValueAllNew,
	})
	if err != nil {
		return circuit.Circuit{}, fmt.Errorf("store: set override %s on %q: %w", o, id, err)
	}
	c, err := Decode(out.Attributes)
	if err != nil {
		return circuit.Circuit{}, err
	}
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
// the stored circuit and whether there was an override to clear (an
// expired one counts). Clearing a circuit with no override writes nothing.
func (s *Store) ClearOverride(ctx context.Context, id string, now time.Time) (c circuit.Circuit, cleared bool, err error) {
	if err := circuit.ValidateID(id); err != nil {
		return circuit.Circuit{}, false, fmt.Errorf("store: clear override: %w", err)
	}
	e := newExpr()
	e.remove("override")
	e.remove("overrideReason")
	e.remove("overrideUntil")
	e.remove("overrideAt")
	cond := "attribute_exists(" + e.name("override") + ")"
	out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                           aws.String(s.table),
		Key:                                 key(id),
		UpdateExpression:                    aws.String(e.update()),
		ConditionExpression:                 aws.String(cond),
		ExpressionAttributeNames:            e.names,
		ReturnValues:                        types.ReturnValueAllOld,
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	})
	if err != nil {
		var ccf *types.ConditionalCheckFailedException
		if errors.As(err, &ccf) {
			if len(ccf.Item) == 0 {
				return circuit.New(id), false, nil
			}
			c, err := Decode(ccf.Item)
			return c, false, err
		}
		return circuit.Circuit{}, false, fmt.Errorf("store: clear override on %q: %w", id, err)
	}
	old, err := Decode(out.Attributes)
	if err != nil {
		return circuit.Circuit{}, false, err
	}
	s.log().LogAttrs(ctx, slog.LevelInfo, MsgOverrideCleared,
		slog.String("service", id),
		slog.String("override", string(old.Override)),
		slog.Time("at", now),
	)
	c = old
	c.Override, c.OverrideReason, c.OverrideUntil, c.OverrideAt = circuit.NoOverride, "", time.Time{}, time.Time{}
	return c, true, nil
}
