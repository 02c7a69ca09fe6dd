package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// ErrLeaseBusy means every probe lease slot of a circuit is held.
var ErrLeaseBusy = errors.New("store: every probe lease slot is held")

// leaseTTLMargin keeps a released or expired lease item around a little
// past its lease, until DynamoDB's TTL deletes it.
const leaseTTLMargin = time.Minute

// LeaseKey is the key of probe lease slot n of service id:
// "<id>#lease#<n>".
func LeaseKey(id string, slot int) string {
	return id + LeaseInfix + strconv.Itoa(slot)
}

// Lease is a probe lease: the right to make one trial call to a HALF_OPEN
// circuit, until Until.
type Lease struct {
	// ID is the service ID.
	ID string
	// Slot is the lease slot, 0 ≤ Slot < the number of slots.
	Slot int
	// Holder identifies the extension that holds the lease.
	Holder string
	// Token identifies this claim; only it releases the lease.
	Token string
	// Version is the circuit's version when the lease was claimed.
	Version int64
	// Until is when the lease expires, released or not.
	Until time.Time
}

// BusyError is ErrLeaseBusy with the earliest time a slot frees up.
type BusyError struct {
	// Until is the earliest expiry of the held slots (zero if unknown).
	Until time.Time
}

// Error returns ErrLeaseBusy's message.
func (e *BusyError) Error() string { return ErrLeaseBusy.Error() }

// Unwrap makes errors.Is(err, ErrLeaseBusy) hold.
func (e *BusyError) Unwrap() error { return ErrLeaseBusy }

// UncertainClaimError is ClaimLease's error when a claim's answer was lost
// (a timeout, a network error, throttling after a first attempt): the
// claim may or may not have been applied. Releasing Lease (ReleaseLease,
// by its token) frees the slot if it was, and does nothing otherwise.
type UncertainClaimError struct {
	// Lease is the claim that was sent.
	Lease Lease
	// Err is the error of the call.
	Err error
}

// Error names the lease slot whose claim is uncertain and the call's error.
func (e *UncertainClaimError) Error() string {
	return fmt.Sprintf("store: claim %s: %v", LeaseKey(e.Lease.ID, e.Lease.Slot), e.Err)
}

// Unwrap returns the call's error.
func (e *UncertainClaimError) Unwrap() error { return e.Err }

// ClaimLease claims one of the slots lease slots of service id, trying
// them in order from first, each with one conditional UpdateItem: a slot
// is free when it was never claimed, was released, or its lease expired
// before now. The lease lasts ttl and records holder and the circuit's
// version. When every slot is held it returns a *BusyError.
//
// The claim's token is written with it: a failed condition on a slot that
// holds that token means an earlier attempt of this claim was applied (the
// SDK retried after losing the answer), and the claim succeeds. Any other
// error, except a permanent refusal, is an *UncertainClaimError, so that
// the caller can give back a claim it cannot tell was applied.
func (s *Store) ClaimLease(ctx context.Context, id string, slots, first int, holder string, version int64, ttl time.Duration, now time.Time) (Lease, error) {
	if slots < 1 {
		slots = 1
	}
	token, err := newToken()
	if err != nil {
		return Lease{}, err
	}
	busy := &BusyError{}
	for i := range slots {
		slot := (first + i) % slots
		l := Lease{ID: id, Slot: slot, Holder: holder, Token: token, Version: version, Until: now.Add(ttl)}
		e := newExpr()
		e.set("holder", &types.AttributeValueMemberS{Value: holder})
		e.set("token", &types.AttributeValueMemberS{Value: token})
		e.set("version", num(version))
		e.set("leaseUntil", num(l.Until.UnixMilli()))
		e.set(TTLAttribute, num(l.Until.Add(leaseTTLMargin).Unix()))
		cond := "attribute_not_exists(" + e.name("token") + ") OR " + e.name("leaseUntil") + " < " + e.value(num(now.UnixMilli()))
		_, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName:                           aws.String(s.table),
			Key:                                 key(LeaseKey(id, slot)),
			UpdateExpression:                    aws.String(e.update()),
			ConditionExpression:                 aws.String(cond),
			ExpressionAttributeNames:            e.names,
			ExpressionAttributeValues:           e.values,
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
		}, s.callOpts...)
		if err == nil {
			return l, nil
		}
		var ccf *types.ConditionalCheckFailedException
		if !errors.As(err, &ccf) {
			if Permanent(err) {
				return Lease{}, fmt.Errorf("store: claim %s: %w", LeaseKey(id, slot), err)
			}
			return Lease{}, &UncertainClaimError{Lease: l, Err: err}
		}
		if s.holdsToken(ctx, ccf, LeaseKey(id, slot), token, "token") {
			return l, nil
		}
		var held struct {
			Until int64 `dynamodbav:"leaseUntil"`
		}
		if len(ccf.Item) > 0 && attributevalue.UnmarshalMap(ccf.Item, &held) == nil && held.Until > 0 {
			if u := time.UnixMilli(held.Until); busy.Until.IsZero() || u.Before(busy.Until) {
				busy.Until = u
			}
		}
	}
	return Lease{}, busy
}

// ReleaseLease frees lease l's slot, if l still holds it (the same token):
// a lease that expired and was claimed again by someone else is left
// alone, and the result then wraps ErrConflict.
func (s *Store) ReleaseLease(ctx context.Context, l Lease) error {
	e := newExpr()
	e.remove("token")
	e.remove("holder")
	cond := e.name("token") + " = " + e.value(&types.AttributeValueMemberS{Value: l.Token})
	_, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(s.table),
		Key:                       key(LeaseKey(l.ID, l.Slot)),
		UpdateExpression:          aws.String(e.update()),
		ConditionExpression:       aws.String(cond),
		ExpressionAttributeNames:  e.names,
		ExpressionAttributeValues: e.values,
	}, s.callOpts...)
	if err != nil {
		var ccf *types.ConditionalCheckFailedException
		if errors.As(err, &ccf) {
			return fmt.Errorf("store: release %s: lease lost: %w", LeaseKey(l.ID, l.Slot), ErrConflict)
		}
		return fmt.Errorf("store: release %s: %w", LeaseKey(l.ID, l.Slot), err)
	}
	return nil
}

// newToken returns a random token for a lease claim or a circuit write.
func newToken() (string, error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("store: request token: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
