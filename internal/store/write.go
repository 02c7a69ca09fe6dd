package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
)

// ErrConflict means a conditional write found the item changed since it was
// read: another writer won the race.
var ErrConflict = errors.New("store: circuit changed since it was read")

// WriteTokenAttribute holds the random token of the last write of a
// circuit item. A conditional write that was applied but whose answer was
// lost is retried by the SDK; the retry's condition then fails, and the
// token, read back from the failed check, shows the write as ours.
const WriteTokenAttribute = "writeToken"

// PriorWriteTokenAttribute holds the token of the write before the last
// one, so that a write is still recognised as ours when another writer's
// write landed on top of it before the SDK's retry.
const PriorWriteTokenAttribute = "priorWriteToken"

// noToken stands for "no earlier token" in PriorWriteTokenAttribute.
const noToken = "-"

// Write stores the state-machine part of next, on the condition that the
// item still holds what cur holds: the same version, counters, open count
// and retry time (a missing attribute counts as zero, so a circuit that was
// never written is created). A lost race returns an error wrapping
// ErrConflict.
//
// With circuit.Transition, next.Version must be cur.Version+1 and the write
// also sets updatedAt, previousState and reason. With
// circuit.CounterUpdate, next.Version must equal cur.Version: counter
// updates never bump the version. Override attributes are never touched,
// so a concurrent SetOverride is not lost.
//
// Every write carries a fresh token (WriteTokenAttribute) and keeps the
// previous write's (PriorWriteTokenAttribute). When the condition fails on
// an item that holds that token in either, an earlier attempt of this same
// write was applied (the SDK retried it after losing the answer; another
// write may have landed on top of it since), so Write reports success
// rather than a conflict: the decision counts once.
//
// Write writes the circuit item only; Apply also brings its read copies
// in step (see SyncCopies), as the updater's next check does.
func (s *Store) Write(ctx context.Context, cur, next circuit.Circuit, change circuit.Change) error {
	return s.write(ctx, cur, next, change, nil, 0)
}

// write is Write. With raw, the circuit item as read when it could not be
// decoded (cur is then what was salvaged from it), the write rewrites
// every attribute of the state machine and is conditioned on the item
// still holding the raw values read, rather than on cur's. It names
// only attributes of ExtensionWritableAttributes (attached functions may
// write no others), so legacy override attributes that do not decode stay
// until the override is migrated (MigrateOverride removes them), and are
// ignored after.
//
// Every write adds one to StateRevAttribute and asks for it back
// (ReturnValues UPDATED_NEW); with copies > 1 it then writes the state
// machine's attributes, at that revision, to the circuit's read copies,
// also when the answer was lost and the write is recognised by its token
// (the revision then comes from the item read back).
func (s *Store) write(ctx context.Context, cur, next circuit.Circuit, change circuit.Change, raw map[string]types.AttributeValue, copies int) error {
	switch change {
	case circuit.Transition:
		if next.Version != cur.Version+1 {
			return fmt.Errorf("store: transition of %q from version %d to %d: want version+1", cur.ID, cur.Version, next.Version)
		}
	case circuit.CounterUpdate:
		if next.Version != cur.Version {
			return fmt.Errorf("store: counter update of %q changes version %d to %d", cur.ID, cur.Version, next.Version)
		}
	default:
		return fmt.Errorf("store: write of %q with change %s", cur.ID, change)
	}
	if cur.ID == "" || next.ID != cur.ID {
		return fmt.Errorf("store: write changes circuit ID %q to %q", cur.ID, next.ID)
	}
	if !next.State.Valid() {
		return fmt.Errorf("store: write of %q with unknown state %q", cur.ID, next.State)
	}

	token, err := newToken()
	if err != nil {
		return err
	}
	e := newExpr()
	e.set(WriteTokenAttribute, &types.AttributeValueMemberS{Value: token})
	e.setCopy(PriorWriteTokenAttribute, WriteTokenAttribute, &types.AttributeValueMemberS{Value: noToken})
	e.set("state", &types.AttributeValueMemberS{Value: string(next.State)})
	e.set("version", num(next.Version))
	e.set("failures", num(int64(next.ConsecutiveFailures)))
	e.set("successes", num(int64(next.ConsecutiveSuccesses)))
	e.set("openCount", num(int64(next.OpenCount)))
	e.setOrRemove("retryAt", toMillis(next.RetryAt))
	switch {
	case change == circuit.Transition:
		e.set("updatedAt", num(toMillis(next.UpdatedAt)))
		e.set("previousState", &types.AttributeValueMemberS{Value: string(cur.State)})
		e.setOrRemoveString("reason", next.Reason)
	case raw != nil:
		e.setOrRemove("updatedAt", toMillis(next.UpdatedAt))
		e.setOrRemoveString("previousState", string(next.PreviousState))
		e.setOrRemoveString("reason", next.Reason)
	}
	if raw != nil {
		for _, a := range []string{"state", "version", "failures", "successes", "openCount", "retryAt", WriteTokenAttribute} {
			e.guardRaw(a, raw[a])
		}
	} else {
		e.guard("version", cur.Version)
		e.guard("failures", int64(cur.ConsecutiveFailures))
		e.guard("successes", int64(cur.ConsecutiveSuccesses))
		e.guard("openCount", int64(cur.OpenCount))
		e.guard("retryAt", toMillis(cur.RetryAt))
	}

	e.add(StateRevAttribute, num(1))

	// writeCopies writes what this write stored, at revision rev, to
	// the circuit's read copies.
	writeCopies := func(rev int64) {
		if copies <= 1 || rev <= 0 {
			return
		}
		c := next
		switch {
		case change == circuit.Transition:
			c.PreviousState = cur.State
		case raw == nil:
			c.UpdatedAt, c.PreviousState, c.Reason = cur.UpdatedAt, cur.PreviousState, cur.Reason
		}
		s.copyStateWrites(ctx, c, rev, copies)
	}

	out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(s.table),
		Key:                       key(cur.ID),
		UpdateExpression:          aws.String(e.update()),
		ConditionExpression:       aws.String(e.condition()),
		ExpressionAttributeNames:  e.names,
		ExpressionAttributeValues: e.values,
		ReturnValues:              types.ReturnValueUpdatedNew,
	}, s.callOpts...)
	if err != nil {
		var ccf *types.ConditionalCheckFailedException
		if errors.As(err, &ccf) {
			if s.holdsToken(ctx, ccf, cur.ID, token, WriteTokenAttribute, PriorWriteTokenAttribute) {
				// The write was applied and its answer lost. When it is
				// still the last write of the item, the item read back
				// holds its revision: the copies get it as usual (a
				// later write writes its own copies).
				if v, ok := ccf.Item[WriteTokenAttribute].(*types.AttributeValueMemberS); ok && v.Value == token {
					writeCopies(numAttr(ccf.Item, StateRevAttribute))
				}
				return nil
			}
			return fmt.Errorf("store: write circuit %q at version %d: %w", cur.ID, cur.Version, ErrConflict)
		}
		return fmt.Errorf("store: write circuit %q at version %d: %w", cur.ID, cur.Version, err)
	}
	writeCopies(numAttr(out.Attributes, StateRevAttribute))
	return nil
}

// holdsToken reports whether the item a failed condition check was made
// on (item id) holds token in one of the attributes attrs. DynamoDB
// returns that item with the failure when the request asked for it
// (ReturnValuesOnConditionCheckFailure); otherwise, or with an emulator
// that does not return it, the item is read back. Writes of circuit items
// do not ask for it: attached functions' grant on those keys restricts
// the attributes a request may touch, and the read back needs no such
// care. A failed read counts as not holding it.
func (s *Store) holdsToken(ctx context.Context, ccf *types.ConditionalCheckFailedException, id, token string, attrs ...string) bool {
	item := ccf.Item
	if len(item) == 0 {
		out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
			TableName:      aws.String(s.table),
			Key:            key(id),
			ConsistentRead: aws.Bool(true),
		}, s.callOpts...)
		if err != nil {
			return false
		}
		item = out.Item
		ccf.Item = item
	}
	for _, attr := range attrs {
		if v, ok := item[attr].(*types.AttributeValueMemberS); ok && token != "" && v.Value == token {
			return true
		}
	}
	return false
}

// expr builds an update and a condition expression with placeholder names
// for every attribute, so reserved words (such as state) need no care.
type expr struct {
	sets, removes, adds, conds []string
	names                      map[string]string
	values                     map[string]types.AttributeValue
	n                          int
}

func newExpr() *expr {
	return &expr{names: map[string]string{}, values: map[string]types.AttributeValue{}}
}

func (e *expr) name(attr string) string {
	n := "#" + attr
	e.names[n] = attr
	return n
}

func (e *expr) value(v types.AttributeValue) string {
	e.n++
	p := ":v" + strconv.Itoa(e.n)
	e.values[p] = v
	return p
}

func (e *expr) set(attr string, v types.AttributeValue) {
	e.sets = append(e.sets, e.name(attr)+" = "+e.value(v))
}

// setIfAbsent sets attr only when the item does not have it yet.
func (e *expr) setIfAbsent(attr string, v types.AttributeValue) {
	n := e.name(attr)
	e.sets = append(e.sets, n+" = if_not_exists("+n+", "+e.value(v)+")")
}

// setCopy sets attr to the value attribute from holds before the update,
// or to def when the item has no such attribute.
func (e *expr) setCopy(attr, from string, def types.AttributeValue) {
	e.sets = append(e.sets, e.name(attr)+" = if_not_exists("+e.name(from)+", "+e.value(def)+")")
}

// setOrRemoveString sets a string attribute, or removes it when v is
// empty.
func (e *expr) setOrRemoveString(attr, v string) {
	if v == "" {
		e.remove(attr)
		return
	}
	e.set(attr, &types.AttributeValueMemberS{Value: v})
}

// guardRaw adds "attr = v" to the condition when v is a string, number or
// binary value, "attr has v's type" for other values, and "attr does not
// exist" when v is nil.
func (e *expr) guardRaw(attr string, v types.AttributeValue) {
	n := e.name(attr)
	switch v.(type) {
	case nil:
		e.conds = append(e.conds, "attribute_not_exists("+n+")")
	case *types.AttributeValueMemberS, *types.AttributeValueMemberN, *types.AttributeValueMemberB:
		e.conds = append(e.conds, n+" = "+e.value(v))
	default:
		e.conds = append(e.conds, "attribute_type("+n+", "+e.value(&types.AttributeValueMemberS{Value: attributeType(v)})+")")
	}
}

// attributeType is the DynamoDB type name of v, as attribute_type wants it.
func attributeType(v types.AttributeValue) string {
	switch v.(type) {
	case *types.AttributeValueMemberBOOL:
		return "BOOL"
	case *types.AttributeValueMemberNULL:
		return "NULL"
	case *types.AttributeValueMemberL:
		return "L"
	case *types.AttributeValueMemberM:
		return "M"
	case *types.AttributeValueMemberSS:
		return "SS"
	case *types.AttributeValueMemberNS:
		return "NS"
	case *types.AttributeValueMemberBS:
		return "BS"
	}
	return "S"
}

// add adds v to number attribute attr (ADD), creating it when missing.
func (e *expr) add(attr string, v types.AttributeValue) {
	e.adds = append(e.adds, e.name(attr)+" "+e.value(v))
}

func (e *expr) remove(attr string) {
	e.removes = append(e.removes, e.name(attr))
}

// setOrRemove sets a number attribute, or removes it when ms is zero.
func (e *expr) setOrRemove(attr string, ms int64) {
	if ms == 0 {
		e.remove(attr)
		return
	}
	e.set(attr, num(ms))
}

// guard adds "attr = want" to the condition; a missing attribute matches a
// zero want.
func (e *expr) guard(attr string, want int64) {
	n, v := e.name(attr), e.value(num(want))
	if want == 0 {
		e.conds = append(e.conds, "(attribute_not_exists("+n+") OR "+n+" = "+v+")")
		return
	}
	e.conds = append(e.conds, n+" = "+v)
}

func (e *expr) update() string {
	var parts []string
	if len(e.sets) > 0 {
		parts = append(parts, "SET "+strings.Join(e.sets, ", "))
	}
	if len(e.removes) > 0 {
		parts = append(parts, "REMOVE "+strings.Join(e.removes, ", "))
	}
	if len(e.adds) > 0 {
		parts = append(parts, "ADD "+strings.Join(e.adds, ", "))
	}
	return strings.Join(parts, " ")
}

func (e *expr) condition() string {
	return strings.Join(e.conds, " AND ")
}

func num(v int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(v, 10)}
}
