package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
)

// Read copies. A circuit item "<id>" can have read copies "<id>#r#<k>",
// 1 ≤ k < K, each a full copy of the circuit item (the state machine's
// attributes and the operator override), so that a fleet's eventually
// consistent refreshes spread over K items instead of one. K is in the
// data: the circuit item's ReadCopiesAttribute, set by the updater
// (SyncCopies). Every writer writes the circuit item first, with its usual
// conditional write, then each copy on a condition that keeps a late copy
// write from overwriting a newer one: the state machine's attributes carry
// a revision of their own (StateRevAttribute, +1 at every state write of
// the circuit item), and the override its own (OverrideAttribute's rev),
// since an attached function may write only the first and an operator
// only the second. Copy writes never create a copy: the updater does, and
// repairs copies that lag.
const (
	// ReadCopiesAttribute holds K, the number of read copies of a circuit
	// (the circuit item counting as copy 0), on the circuit item and on
	// each copy. Missing means 1: no copies.
	ReadCopiesAttribute = "readCopies"
	// StateRevAttribute is the revision of the state machine's attributes.
	StateRevAttribute = "stateRev"
	// DefaultReadCopies is K when the updater's input does not say.
	DefaultReadCopies = 4
	// MaxReadCopies bounds K.
	MaxReadCopies = 16
)

// MsgCopyRepaired is logged (a warning) when SyncCopies finds a read copy
// missing or behind its circuit item and writes it.
const MsgCopyRepaired = "read copy repaired"

// copyMemo is what a reader learned of the read copies of its circuits.
type copyMemo struct {
	mu sync.Mutex
	// k is the number of copies per circuit, as last read.
	k map[string]int
	// skipUntil is when to try a circuit's copy again after it was found
	// missing or unusable.
	skipUntil map[string]time.Time
}

func newCopyMemo() *copyMemo {
	return &copyMemo{k: map[string]int{}, skipUntil: map[string]time.Time{}}
}

// copyRetry is how long a reader whose copy was missing reads the circuit
// item instead: about the updater's period, which creates copies.
const copyRetry = time.Minute

// readKey is the key a reader with pick reads for circuit id: its copy
// among K, the circuit item when K is 1 or its copy was found missing
// within copyRetry. Until a read tells K, K is taken to be
// DefaultReadCopies, so that a fleet that starts at once spreads its first
// reads too; a reader whose guess finds no usable copy reads the circuit
// item, which tells it K.
func (m *copyMemo) readKey(id string, pick int, now time.Time) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	k, known := m.k[id]
	if !known {
		k = DefaultReadCopies
	}
	if k <= 1 || now.Before(m.skipUntil[id]) {
		return id
	}
	return CopyKey(id, pick%k)
}

func (m *copyMemo) learn(id string, k int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.k[id] = k
}

func (m *copyMemo) skip(id string, until time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.skipUntil[id] = until
}

// readCopies is the ReadCopiesAttribute of item: 1 when missing or out of
// range.
func readCopies(item map[string]types.AttributeValue) int {
	v, ok := item[ReadCopiesAttribute].(*types.AttributeValueMemberN)
	if !ok {
		return 1
	}
	k, err := strconv.Atoi(v.Value)
	if err != nil || k < 1 || k > MaxReadCopies {
		return 1
	}
	return k
}

// numAttr is the number attribute a of item (0 when missing or not a
// number).
func numAttr(item map[string]types.AttributeValue, a string) int64 {
	v, ok := item[a].(*types.AttributeValueMemberN)
	if !ok {
		return 0
	}
	n, _ := strconv.ParseInt(v.Value, 10, 64)
	return n
}

// usableCopy reports whether item, read at copy index k, may stand for
// its circuit: it exists, carries the override attribute (copies are
// created whole), and k is still below the copies' K.
func usableCopy(item map[string]types.AttributeValue, k int) bool {
	if item == nil {
		return false
	}
	if _, ok := item[OverrideAttribute]; !ok {
		return false
	}
	return k < readCopies(item)
}

// copyState sets the state machine's attributes of c, at revision rev, on
// e: every attribute, set or removed, so that a copy ends up equal to the
// circuit item whatever it held.
func copyState(e *expr, c circuit.Circuit, rev int64) {
	e.set("state", &types.AttributeValueMemberS{Value: string(c.State)})
	e.set("version", num(c.Version))
	e.set("failures", num(int64(c.ConsecutiveFailures)))
	e.set("successes", num(int64(c.ConsecutiveSuccesses)))
	e.set("openCount", num(int64(c.OpenCount)))
	e.setOrRemove("retryAt", toMillis(c.RetryAt))
	e.setOrRemove("updatedAt", toMillis(c.UpdatedAt))
	e.setOrRemoveString("previousState", string(c.PreviousState))
	e.setOrRemoveString("reason", c.Reason)
	e.set(StateRevAttribute, num(rev))
}

// forCopies calls write for copies 1..k-1 at once and waits for them.
func forCopies(k int, write func(i int)) {
	var wg sync.WaitGroup
	for i := 1; i < k; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			write(i)
		}()
	}
	wg.Wait()
}

// copyStateWrites writes the state machine's attributes of c, at
// revision rev, to copies 1..k-1 of its circuit, each on the condition
// that the copy exists and holds an older revision. A refused or failed
// copy write is left to the updater's repair (SyncCopies).
func (s *Store) copyStateWrites(ctx context.Context, c circuit.Circuit, rev int64, k int) {
	forCopies(k, func(i int) {
		e := newExpr()
		copyState(e, c, rev)
		sr := e.name(StateRevAttribute)
		e.conds = append(e.conds, "attribute_exists("+e.name(KeyAttribute)+")",
			"(attribute_not_exists("+sr+") OR "+sr+" < "+e.value(num(rev))+")")
		s.copyWrite(ctx, c.ID, i, e)
	})
}

// copyOverrideWrites writes override v, at revision rev, to copies
// 1..k-1 of circuit id, each on the condition that the copy exists and
// holds an older override revision.
func (s *Store) copyOverrideWrites(ctx context.Context, id string, v types.AttributeValue, rev int64, k int) {
	forCopies(k, func(i int) {
		e := newExpr()
		e.set(OverrideAttribute, v)
		r := e.name(OverrideAttribute) + "." + e.name("rev")
		e.conds = append(e.conds, "attribute_exists("+e.name(KeyAttribute)+")",
			"(attribute_not_exists("+r+") OR "+r+" < "+e.value(num(rev))+")")
		s.copyWrite(ctx, id, i, e)
	})
}

// copyWriteRetry is how long copyWrite waits before sending a failed
// copy write again.
const copyWriteRetry = 50 * time.Millisecond

// MsgCopyNotWritten is logged (a warning) when a write of a read copy
// failed twice: the copy lags until the updater's next check repairs it.
const MsgCopyNotWritten = "read copy not written"

// copyUpdate is the conditional UpdateItem of e on read copy i of id.
func (s *Store) copyUpdate(id string, i int, e *expr) *dynamodb.UpdateItemInput {
	return &dynamodb.UpdateItemInput{
		TableName:                 aws.String(s.table),
		Key:                       key(CopyKey(id, i)),
		UpdateExpression:          aws.String(e.update()),
		ConditionExpression:       aws.String(e.condition()),
		ExpressionAttributeNames:  e.names,
		ExpressionAttributeValues: e.values,
	}
}

// copyWrite sends one conditional write of copy i of circuit id; a
// refused condition is the normal outcome of a late or concurrent write.
// A write that fails otherwise is sent once more after copyWriteRetry
// (within ctx); when that fails too it is logged (MsgCopyNotWritten) and
// left to the updater's repair.
func (s *Store) copyWrite(ctx context.Context, id string, i int, e *expr) {
	in := s.copyUpdate(id, i, e)
	var ccf *types.ConditionalCheckFailedException
	_, err := s.db.UpdateItem(ctx, in, s.callOpts...)
	if err == nil || errors.As(err, &ccf) {
		return
	}
	t := time.NewTimer(copyWriteRetry)
	select {
	case <-ctx.Done():
		t.Stop()
		err = fmt.Errorf("%w (not retried: %w)", err, ctx.Err())
	case <-t.C:
		_, err = s.db.UpdateItem(ctx, in, s.callOpts...)
	}
	if err == nil || errors.As(err, &ccf) {
		return
	}
	s.log().LogAttrs(ctx, slog.LevelWarn, MsgCopyNotWritten,
		slog.String("service", id), slog.Int("copy", i), slog.String("error", err.Error()))
}

// CopySync is what SyncCopies found and did.
type CopySync struct {
	// Repaired lists the copies written because they were missing or
	// behind the circuit item; Retired those told that they are no longer
	// read (K went down).
	Repaired, Retired []int
	// Reads and Writes count the DynamoDB calls made.
	Reads, Writes int
}

// SyncCopies makes circuit id have k read copies (1 ≤ k ≤ MaxReadCopies),
// all equal to its circuit item: it reads the circuit item and its copies
// strongly consistent, creates missing copies, writes the state or the
// override of copies that are behind (each on the condition that the copy
// did not get newer meanwhile) and tells copies past k, left from a larger
// K, that they are no longer read. Each repair is logged
// (MsgCopyRepaired). known is the circuit item's K as last read
// (Applied.ReadCopies; 0 or 1 when it has none).
//
// ReadCopiesAttribute on the circuit item is raised before the copies are
// written, and lowered only after every copy past k was told: a copy whose
// retire write failed stays within the circuit item's K, so the next call
// visits it again. Every copy is tried even when one fails; the errors are
// joined. After creating copies it reads the circuit item again and
// brings the new copies up to a write that landed meanwhile (a copy write
// made before the copy existed is refused). The updater calls it after
// every check; k = 1 with known ≤ 1 costs nothing.
func (s *Store) SyncCopies(ctx context.Context, id string, k, known int) (CopySync, error) {
	var out CopySync
	if k < 1 || k > MaxReadCopies {
		return out, fmt.Errorf("store: %d read copies of %q: want 1..%d", k, id, MaxReadCopies)
	}
	if k == 1 && known <= 1 {
		return out, nil
	}
	byKey, err := s.readCopyItems(ctx, id, 0, max(k, known), &out)
	if err != nil {
		return out, err
	}
	primary := byKey[id]
	if primary == nil {
		return out, nil // nothing to copy yet: the migration creates it
	}
	cur := readCopies(primary)
	if n := max(k, known); cur > n {
		// The circuit item holds a larger K than the caller knew: read
		// the copies past what was read, to retire them too.
		more, err := s.readCopyItems(ctx, id, n, cur, &out)
		if err != nil {
			return out, err
		}
		maps.Copy(byKey, more)
	}
	r := readItem(id, primary)
	if r.Unreadable != nil || !r.OverrideStored {
		return out, nil // copies of an item only a rewrite or migration fixes would spread it
	}
	if cur < k {
		if err := s.setReadCopies(ctx, id, k); err != nil {
			return out, err
		}
		out.Writes++
	}
	created, err := s.syncCopyItems(ctx, id, k, max(k, known, cur), r, primary, byKey, &out)
	if len(created) > 0 {
		// A write of the circuit item that landed between the read above
		// and a copy's creation was refused on the missing copy: read the
		// circuit item again and bring the new copies up to it.
		again, rerr := s.readCopyItems(ctx, id, 0, k, &out)
		if rerr != nil {
			return out, errors.Join(err, rerr)
		}
		if p := again[id]; p != nil {
			if r2 := readItem(id, p); r2.Unreadable == nil && r2.OverrideStored {
				_, serr := s.syncCopyItems(ctx, id, k, k, r2, p, again, &out)
				err = errors.Join(err, serr)
			}
		}
	}
	if err != nil {
		return out, err
	}
	if cur > k {
		// Every copy past k is retired: readers may stop counting them.
		if err := s.setReadCopies(ctx, id, k); err != nil {
			return out, err
		}
		out.Writes++
	}
	return out, nil
}

// readCopyItems reads copies from..to-1 of circuit id (copy 0 being the
// circuit item) strongly consistent, by key.
func (s *Store) readCopyItems(ctx context.Context, id string, from, to int, out *CopySync) (map[string]map[string]types.AttributeValue, error) {
	keys := make([]string, 0, to-from)
	for i := from; i < to; i++ {
		keys = append(keys, CopyKey(id, i))
	}
	items, err := s.batchGet(ctx, keys, true, s.callOpts...)
	out.Reads++
	if err != nil {
		return nil, fmt.Errorf("store: read copies of %q: %w", id, err)
	}
	byKey := make(map[string]map[string]types.AttributeValue, len(items))
	for _, item := range items {
		if kv, ok := item[KeyAttribute].(*types.AttributeValueMemberS); ok {
			byKey[kv.Value] = item
		}
	}
	return byKey, nil
}

// setReadCopies sets ReadCopiesAttribute of circuit item id to k.
func (s *Store) setReadCopies(ctx context.Context, id string, k int) error {
	e := newExpr()
	e.set(ReadCopiesAttribute, num(int64(k)))
	if err := s.update(ctx, id, e); err != nil {
		return fmt.Errorf("store: set read copies of %q: %w", id, err)
	}
	return nil
}

// syncCopyItems writes copies 1..n-1 of circuit id that differ from its
// circuit item primary (read as r): those below k get its state and
// override, those from k on are retired. byKey holds the copies as read.
// It tries every copy and returns the copies it created and the joined
// errors of the writes that failed.
func (s *Store) syncCopyItems(ctx context.Context, id string, k, n int, r Read, primary map[string]types.AttributeValue, byKey map[string]map[string]types.AttributeValue, out *CopySync) ([]int, error) {
	ov, err := r.override.encode()
	if err != nil {
		return nil, err
	}
	state := r.Circuit
	rev := numAttr(primary, StateRevAttribute)
	var created []int
	var errs []error
	for i := 1; i < n; i++ {
		item := byKey[CopyKey(id, i)]
		e := newExpr()
		what := ""
		switch {
		case i >= k:
			if item == nil || readCopies(item) == k {
				continue
			}
			e.set(ReadCopiesAttribute, num(int64(k)))
			e.conds = append(e.conds, "attribute_exists("+e.name(KeyAttribute)+")")
			what = "retired"
		case item == nil:
			copyState(e, state, rev)
			e.set(OverrideAttribute, ov)
			e.set(ReadCopiesAttribute, num(int64(k)))
			e.conds = append(e.conds, "attribute_not_exists("+e.name(KeyAttribute)+")")
			what = "created"
		default:
			c, _, derr := decode(item)
			o, _, oerr := DecodeOverrideAttribute(item)
			// A copy ahead of its circuit item's revision means the
			// circuit item's was set back (an attached function may write
			// stateRev): the copy is written to the circuit item's, on the
			// condition that it still holds the revision read, or copy
			// writes would be refused until the revision caught up.
			copyRev := numAttr(item, StateRevAttribute)
			stateBehind := derr != nil || copyRev != rev || !sameState(c, state)
			overrideBehind := oerr != nil || o.Rev < r.override.Rev || o.Override != r.override.Override || o.Reason != r.override.Reason || !o.Until.Equal(r.override.Until)
			if !stateBehind && !overrideBehind && readCopies(item) == k {
				continue
			}
			e.set(ReadCopiesAttribute, num(int64(k)))
			if stateBehind {
				copyState(e, state, rev)
				sr := e.name(StateRevAttribute)
				if copyRev > rev {
					e.conds = append(e.conds, sr+" = "+e.value(num(copyRev)))
				} else {
					e.conds = append(e.conds, "(attribute_not_exists("+sr+") OR "+sr+" <= "+e.value(num(rev))+")")
				}
				what = "state"
			}
			if overrideBehind {
				e.set(OverrideAttribute, ov)
				rv := e.name(OverrideAttribute) + "." + e.name("rev")
				e.conds = append(e.conds, "(attribute_not_exists("+rv+") OR "+rv+" <= "+e.value(num(r.override.Rev))+")")
				what += " override"
			}
			if what == "" {
				what = "readCopies"
			}
		}
		if len(e.conds) == 0 {
			e.conds = append(e.conds, "attribute_exists("+e.name(KeyAttribute)+")")
		}
		_, err := s.db.UpdateItem(ctx, s.copyUpdate(id, i, e), s.callOpts...)
		out.Writes++
		var ccf *types.ConditionalCheckFailedException
		switch {
		case errors.As(err, &ccf):
			// A writer got there first (or, for a retire, the copy is
			// gone): the next check looks again.
			continue
		case err != nil:
			errs = append(errs, fmt.Errorf("store: write read copy %d of %q (%s): %w", i, id, what, err))
			continue
		}
		switch {
		case i >= k:
			out.Retired = append(out.Retired, i)
		case item == nil:
			created = append(created, i)
			out.Repaired = append(out.Repaired, i)
		default:
			out.Repaired = append(out.Repaired, i)
		}
		s.log().LogAttrs(ctx, slog.LevelWarn, MsgCopyRepaired,
			slog.String("service", id), slog.Int("copy", i), slog.String("what", what),
			slog.Int64("stateRev", rev), slog.Int64("overrideRev", r.override.Rev))
	}
	return created, errors.Join(errs...)
}

// sameState reports whether a and b hold the same state machine
// attributes.
func sameState(a, b circuit.Circuit) bool {
	return a.State == b.State && a.Version == b.Version && a.ConsecutiveFailures == b.ConsecutiveFailures &&
		a.ConsecutiveSuccesses == b.ConsecutiveSuccesses && a.OpenCount == b.OpenCount &&
		a.RetryAt.Equal(b.RetryAt) && a.UpdatedAt.Equal(b.UpdatedAt) && a.PreviousState == b.PreviousState && a.Reason == b.Reason
}

// update sends an unconditional UpdateItem of item k built in e.
func (s *Store) update(ctx context.Context, k string, e *expr) error {
	_, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(s.table),
		Key:                       key(k),
		UpdateExpression:          aws.String(e.update()),
		ExpressionAttributeNames:  e.names,
		ExpressionAttributeValues: e.values,
	}, s.callOpts...)
	return err
}
