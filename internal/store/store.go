// Package store persists circuits in the DynamoDB state table. Reads are by
// key (GetItem, BatchGetItem), never a Scan.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
)

// KeyAttribute is the table's partition key attribute (a string).
const KeyAttribute = "id"

// maxBatchGet is DynamoDB's limit of keys per BatchGetItem call.
const maxBatchGet = 100

// API is the part of the DynamoDB client the store uses.
type API interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
}

// Store reads and writes circuits in one table.
type Store struct {
	db          API
	table       string
	logger      *slog.Logger
	maxAttempts int
	clock       func() time.Time
	// callOpts are passed to every read of one circuit (Get) and every
	// conditional write.
	callOpts []func(*dynamodb.Options)
	// eventual makes Get and GetMany read eventually consistent (see
	// WithEventualReads), from the read copy pick selects.
	eventual bool
	// pick chooses the read copy of each circuit that eventual reads
	// read: copy pick mod K. memo holds what was learned of the copies.
	pick int
	memo *copyMemo
}

// New returns a Store over the named table. It logs transitions to
// slog.Default(); see WithLogger.
func New(db API, table string) *Store {
	return &Store{db: db, table: table, maxAttempts: DefaultMaxAttempts, pick: rand.IntN(1 << 30), memo: newCopyMemo()}
}

// WithReadCopy returns a copy of s whose eventually consistent reads read
// copy pick mod K of each circuit (New picks at random), with its own
// memory of the copies: one per simulated environment.
func (s *Store) WithReadCopy(pick int) *Store {
	c := *s
	c.pick, c.memo = max(pick, 0), newCopyMemo()
	return &c
}

// WithLogger returns a copy of s that logs transitions and override
// changes to l.
func (s *Store) WithLogger(l *slog.Logger) *Store {
	c := *s
	c.logger = l
	return &c
}

// WithEventualReads returns a copy of s whose Get and GetMany read
// eventually consistent, for half the read units of a strongly consistent
// read, and from one read copy of each circuit (see SyncCopies): the one
// chosen by New (or WithReadCopy), the circuit item itself until the
// number of copies is known, and while the copy is missing. Such a read may miss a write made
// within about the last second; it is meant for a cache that reads again
// every refresh interval. Every read of a circuit that decides a write
// (Apply, the reads of ReadCircuit and ReadMany) stays strongly
// consistent, and transitions stay conditional writes. Window reads
// (GetBuckets) are eventually consistent either way.
func (s *Store) WithEventualReads() *Store {
	c := *s
	c.eventual = true
	return &c
}

// WithMaxAttempts returns a copy of s whose Apply gives up after n
// read-decide-write rounds (n < 1 means DefaultMaxAttempts).
func (s *Store) WithMaxAttempts(n int) *Store {
	c := *s
	if n < 1 {
		n = DefaultMaxAttempts
	}
	c.maxAttempts = n
	return &c
}

// WithClock returns a copy of s that tells whether an override is in
// force by now (default time.Now). Only reads consult it: see GetMany.
func (s *Store) WithClock(now func() time.Time) *Store {
	c := *s
	c.clock = now
	return &c
}

func (s *Store) now() time.Time {
	if s.clock != nil {
		return s.clock()
	}
	return time.Now()
}

func (s *Store) log() *slog.Logger {
	if s.logger != nil {
		return s.logger
	}
	return slog.Default()
}

// Table returns the name of the table.
func (s *Store) Table() string { return s.table }

// Get reads one circuit and its override item with one BatchGetItem,
// strongly consistent unless s comes from WithEventualReads. A circuit that was never written comes back as
// circuit.New(id) with found false (with its override, if an operator set
// one). See GetMany for how the override is found, and for a circuit item
// that cannot be decoded.
func (s *Store) Get(ctx context.Context, id string) (c circuit.Circuit, found bool, err error) {
	got, err := s.readMany(ctx, []string{id}, s.callOpts...)
	if err != nil {
		var bad ItemErrors
		if errors.As(err, &bad) {
			return circuit.Circuit{}, false, bad[id]
		}
		return circuit.Circuit{}, false, fmt.Errorf("store: get circuit %q: %w", id, err)
	}
	r, ok := got[id]
	if !ok {
		return circuit.New(id), false, nil
	}
	return r.Circuit, r.Found, nil
}

// UnreadableReason is the Reason of a circuit whose item cannot be decoded
// and which is served because an active override decides it (see
// GetMany): the circuit's own state, counters and reason are unknown.
const UnreadableReason = "circuit item unreadable; the operator override decides"

// Read is a circuit as read from the table, with what was found there.
type Read struct {
	// Circuit is the circuit, its override applied. When Unreadable is
	// set it is what could be salvaged from the item (see Unreadable).
	Circuit circuit.Circuit
	// Found reports whether the circuit item exists.
	Found bool
	// OverrideStored reports whether the circuit item holds the override
	// attribute (OverrideAttribute). When it does not, the override (if
	// any) came from where earlier versions kept it, and MigrateOverride
	// should move it.
	OverrideStored bool
	// ReadCopies is the circuit item's number of read copies, K (1 when
	// it has none).
	ReadCopies int
	// LegacyOverrideItem reports whether the override was read from a
	// legacy override item "<id>#override" (only read while the circuit
	// item has no OverrideAttribute).
	LegacyOverrideItem bool
	// Unreadable is why the circuit item, which exists, cannot be decoded
	// (an attribute of the wrong type, an unknown state, an override
	// attribute that is no override); nil when it was decoded. Circuit
	// then holds the attributes that could be decoded, the others zero;
	// an unknown state reads as the state an active override forces,
	// otherwise as CLOSED. Apply rewrites the state of such an item, and
	// SetOverride or ClearOverride its override.
	Unreadable error
	// DroppedOverride is a legacy override attribute of the circuit item
	// that holds no valid override (neither FORCED_OPEN nor FORCED_CLOSED):
	// it is ignored, and never migrated. Empty when there is none, or when
	// the override is found elsewhere (legacy attributes are then not
	// read).
	DroppedOverride string

	// raw is the circuit item as read, kept when Unreadable is set: a
	// rewrite is conditioned on it.
	raw map[string]types.AttributeValue
	// override is the override as found (its revision and clearedAt
	// included); overrideBroken is set when OverrideAttribute exists but
	// does not decode.
	override       OverrideItem
	overrideBroken bool
	// stateRev is the circuit item's StateRevAttribute.
	stateRev int64
}

// ReadCircuit reads one circuit and its override item with one strongly
// consistent BatchGetItem, and tells which of the two items exist. A
// circuit item that cannot be decoded is no error here: Read.Unreadable
// says why, and Read.Circuit holds what could be salvaged. An override
// item that cannot be decoded is an error.
func (s *Store) ReadCircuit(ctx context.Context, id string) (Read, error) {
	return s.read(ctx, id)
}

// ReadMany is ReadCircuit for several circuits, with one BatchGetItem per
// 100 keys. Circuits with neither item are absent from the result. Override
// items that cannot be decoded fail their circuits in an ItemErrors.
func (s *Store) ReadMany(ctx context.Context, ids []string) (map[string]Read, error) {
	got, bad, err := s.readAll(ctx, unique(ids), true)
	if err != nil {
		return got, fmt.Errorf("store: read %d circuits: %w", len(ids), err)
	}
	if len(bad) > 0 {
		return got, bad
	}
	return got, nil
}

// read reads one circuit and its override item; a circuit item that cannot
// be decoded comes back salvaged, with Read.Unreadable set.
func (s *Store) read(ctx context.Context, id string) (Read, error) {
	got, bad, err := s.readAll(ctx, []string{id}, true, s.callOpts...)
	if err != nil {
		return Read{}, fmt.Errorf("store: get circuit %q: %w", id, err)
	}
	if e, ok := bad[id]; ok {
		return Read{}, e
	}
	r, ok := got[id]
	if !ok {
		return Read{Circuit: circuit.New(id)}, nil
	}
	return r, nil
}

// readAll reads the circuit items of ids (unique, valid) with
// BatchGetItem, and then, for the circuits whose item is missing or has no
// OverrideAttribute (not migrated yet), their legacy override items.
// Circuits with neither item are absent from the result. A circuit item
// that cannot be decoded is salvaged (see Read.Unreadable); an override
// item that cannot be decoded fails its circuit in bad. When a read fails
// part-way, the result holds only the circuits whose override is known.
func (s *Store) readAll(ctx context.Context, ids []string, consistent bool, opts ...func(*dynamodb.Options)) (map[string]Read, ItemErrors, error) {
	return s.readFrom(ctx, ids, consistent, false, opts...)
}

// readFrom is readAll; with fromCopies, each circuit is read from its
// read copy (see WithEventualReads), and from its circuit item when the
// copy is missing or may not stand for it.
func (s *Store) readFrom(ctx context.Context, ids []string, consistent, fromCopies bool, opts ...func(*dynamodb.Options)) (map[string]Read, ItemErrors, error) {
	keys := ids
	now := s.now()
	if fromCopies {
		keys = make([]string, len(ids))
		for i, id := range ids {
			keys[i] = s.memo.readKey(id, s.pick, now)
		}
	}
	items, err := s.batchGet(ctx, keys, consistent, opts...)
	result := make(map[string]Read, len(ids))
	bad := ItemErrors{}
	take := func(items []map[string]types.AttributeValue) {
		for _, item := range items {
			k, _ := item[KeyAttribute].(*types.AttributeValueMemberS)
			if k == nil {
				continue
			}
			id, kind, kerr := ParseKey(k.Value)
			if kerr != nil || (kind != KindCircuit && kind != KindCopy) {
				continue
			}
			if kind == KindCopy && !usableCopy(item, copyIndex(k.Value)) {
				if fromCopies {
					s.memo.learn(id, readCopies(item))
				}
				continue
			}
			r := readItem(id, item)
			if fromCopies {
				s.memo.learn(id, r.ReadCopies)
			}
			result[id] = r
		}
	}
	take(items)
	if fromCopies && err == nil {
		var again []string
		for i, id := range ids {
			if _, ok := result[id]; !ok && keys[i] != id {
				again = append(again, id)
				if !slicesContainsKey(items, keys[i]) {
					s.memo.skip(id, now.Add(copyRetry))
				}
			}
		}
		if len(again) > 0 {
			items, err = s.batchGet(ctx, again, consistent, opts...)
			take(items)
		}
	}
	if err != nil {
		for id, r := range result {
			if !r.OverrideStored {
				delete(result, id)
			}
		}
		return result, bad, err
	}
	var legacy []string
	for _, id := range ids {
		if r, ok := result[id]; !ok || !r.OverrideStored {
			legacy = append(legacy, OverrideKey(id))
		}
	}
	if len(legacy) > 0 {
		items, err = s.batchGet(ctx, legacy, consistent, opts...)
		for _, item := range items {
			o, derr := DecodeOverride(item)
			if derr != nil {
				if k, ok := item[KeyAttribute].(*types.AttributeValueMemberS); ok {
					if id, _, kerr := ParseKey(k.Value); kerr == nil {
						bad[id] = derr
					}
				}
				continue
			}
			r, ok := result[o.ID]
			if !ok {
				r.Circuit = circuit.New(o.ID)
			}
			// The override item wins over the circuit item's legacy
			// attributes (which attached functions could write).
			o.applyTo(&r.Circuit)
			r.override = o
			r.LegacyOverrideItem = true
			r.DroppedOverride = ""
			result[o.ID] = r
		}
	}
	now = s.now()
	for id, r := range result {
		if r.Unreadable != nil && r.Circuit.State == "" {
			r.Circuit.State = circuit.Closed
			switch r.Circuit.ActiveOverride(now) {
			case circuit.ForcedOpen:
				r.Circuit.State = circuit.Open
			case circuit.ForcedClosed:
				r.Circuit.State = circuit.Closed
			}
			result[id] = r
		}
	}
	for id := range bad {
		delete(result, id)
	}
	if err != nil {
		// Some override items were not read: only the circuits whose
		// override is on the circuit item count as read.
		for id, r := range result {
			if !r.OverrideStored {
				delete(result, id)
			}
		}
		return result, bad, err
	}
	for id, r := range result {
		if r.DroppedOverride != "" {
			s.log().LogAttrs(ctx, slog.LevelWarn, MsgLegacyOverrideDropped,
				slog.String("service", id),
				slog.String("override", r.DroppedOverride))
		}
	}
	return result, bad, nil
}

// slicesContainsKey reports whether items holds the item of key k.
func slicesContainsKey(items []map[string]types.AttributeValue, k string) bool {
	for _, item := range items {
		if v, ok := item[KeyAttribute].(*types.AttributeValueMemberS); ok && v.Value == k {
			return true
		}
	}
	return false
}

// readItem decodes circuit item (or read copy) item of circuit id,
// salvaging what it can of an item that does not decode.
func readItem(id string, item map[string]types.AttributeValue) Read {
	r := Read{Found: true, ReadCopies: readCopies(item), stateRev: numAttr(item, StateRevAttribute)}
	var dropped circuit.Override
	r.Circuit, dropped, r.Unreadable = decode(item)
	if r.Unreadable != nil {
		r.Circuit, dropped = salvage(id, item)
		r.raw = item
	}
	// A read copy stands for circuit id; its own key is not the ID.
	r.Circuit.ID = id
	r.DroppedOverride = string(dropped)
	o, found, oerr := DecodeOverrideAttribute(item)
	switch {
	case oerr != nil:
		r.OverrideStored, r.overrideBroken = true, true
		if r.Unreadable == nil {
			r.Unreadable = fmt.Errorf("store: circuit %q: %w", id, oerr)
			r.raw = item
		}
		r.Circuit.Override, r.Circuit.OverrideReason, r.Circuit.OverrideUntil, r.Circuit.OverrideAt = circuit.NoOverride, "", time.Time{}, time.Time{}
		r.DroppedOverride = ""
	case found:
		o.ID = id
		o.applyTo(&r.Circuit)
		r.override, r.OverrideStored, r.DroppedOverride = o, true, ""
	default:
		// Not migrated: the legacy attributes, decoded with the item,
		// speak until an override item is found.
		r.override = OverrideItem{ID: id, Override: r.Circuit.Override, Reason: r.Circuit.OverrideReason, Until: r.Circuit.OverrideUntil, At: r.Circuit.OverrideAt}
	}
	return r
}

// readMany is readAll for the readers that serve circuits (Get, GetMany):
// a circuit item that cannot be decoded fails its circuit in ItemErrors,
// unless an active override decides the circuit. Such a circuit is served
// with its override, in the state the override forces (unless the item's
// own state could be read), with UnreadableReason as its reason, and the
// item is logged (MsgUnreadableOverridden).
func (s *Store) readMany(ctx context.Context, ids []string, opts ...func(*dynamodb.Options)) (map[string]Read, error) {
	result, bad, err := s.readFrom(ctx, ids, !s.eventual, s.eventual, opts...)
	now := s.now()
	for id, r := range result {
		if r.Unreadable == nil {
			continue
		}
		if r.Circuit.ActiveOverride(now) == circuit.NoOverride {
			bad[id] = r.Unreadable
			delete(result, id)
			continue
		}
		r.Circuit.Reason = UnreadableReason
		result[id] = r
		s.log().LogAttrs(ctx, slog.LevelWarn, MsgUnreadableOverridden,
			slog.String("service", id),
			slog.String("override", string(r.Circuit.Override)),
			slog.String("error", r.Unreadable.Error()))
	}
	if err != nil {
		return result, err
	}
	if len(bad) > 0 {
		return result, bad
	}
	return result, nil
}

// GetMany reads several circuits and their override items with
// BatchGetItem (see batchGet). A circuit's override item wins over
// override attributes on its circuit item; those, written by earlier
// versions, are read only while the override item does not exist.
// Circuits that were never written (and have no override) are absent from
// the result; duplicate IDs are read once.
//
// A circuit item that cannot be decoded fails its circuit in an
// ItemErrors, unless the circuit has an active override: the override
// then decides, as it would for a readable item. Such a circuit is in the
// result, with its override, the state the override forces (unless the
// item's own state could be read) and UnreadableReason as its reason; the
// store logs it (MsgUnreadableOverridden). ReadMany tells such circuits
// apart.
func (s *Store) GetMany(ctx context.Context, ids []string) (map[string]circuit.Circuit, error) {
	ids = unique(ids)
	got, err := s.readMany(ctx, ids)
	result := make(map[string]circuit.Circuit, len(got))
	for id, r := range got {
		result[id] = r.Circuit
	}
	if err != nil {
		var bad ItemErrors
		if errors.As(err, &bad) {
			return result, err
		}
		return result, fmt.Errorf("store: batch get %d circuits: %w", len(ids), err)
	}
	return result, nil
}

// unique returns ids without duplicates, in their first order.
func unique(ids []string) []string {
	seen := make(map[string]bool, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// ItemErrors is GetMany's error when every key was read but some items
// could not be decoded (edited by hand, or written by a newer version):
// it maps each such circuit ID to its decoding error. The other circuits
// are in GetMany's result, and an ID in neither was never written.
type ItemErrors map[string]error

// Error names every unreadable circuit, in ID order.
func (e ItemErrors) Error() string {
	ids := make([]string, 0, len(e))
	for id := range e {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	msgs := make([]string, len(ids))
	for i, id := range ids {
		msgs[i] = e[id].Error()
	}
	return fmt.Sprintf("store: %d unreadable circuit items: %s", len(ids), strings.Join(msgs, "; "))
}

// record is the item layout of a circuit in the table (documented in
// docs/state-model.md). Times are Unix milliseconds; zero times and empty
// strings are left out. The override attributes are the legacy layout,
// read while the circuit has no override item and never written.
type record struct {
	ID                   string `dynamodbav:"id"`
	State                string `dynamodbav:"state"`
	Version              int64  `dynamodbav:"version"`
	UpdatedAt            int64  `dynamodbav:"updatedAt,omitempty"`
	PreviousState        string `dynamodbav:"previousState,omitempty"`
	Reason               string `dynamodbav:"reason,omitempty"`
	ConsecutiveFailures  int    `dynamodbav:"failures"`
	ConsecutiveSuccesses int    `dynamodbav:"successes"`
	OpenCount            int    `dynamodbav:"openCount"`
	RetryAt              int64  `dynamodbav:"retryAt,omitempty"`
	Override             string `dynamodbav:"override,omitempty"`
	OverrideReason       string `dynamodbav:"overrideReason,omitempty"`
	OverrideUntil        int64  `dynamodbav:"overrideUntil,omitempty"`
	OverrideAt           int64  `dynamodbav:"overrideAt,omitempty"`
}

func toMillis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// Decode turns a circuit item (or a read copy) into a Circuit, with the
// operator override of its OverrideAttribute. An item without that
// attribute (written by earlier versions) comes back with the override of
// its legacy attributes; readers replace it with the override item's when
// that exists. A legacy override attribute that holds no valid override
// is dropped: the circuit comes back without one.
func Decode(item map[string]types.AttributeValue) (circuit.Circuit, error) {
	c, _, err := decode(item)
	if err != nil {
		return c, err
	}
	o, found, err := DecodeOverrideAttribute(item)
	if err != nil {
		return circuit.Circuit{}, fmt.Errorf("store: circuit %q: %w", c.ID, err)
	}
	if found {
		o.applyTo(&c)
	}
	return c, nil
}

// withoutLegacy is item without its legacy override attributes when it
// has the OverrideAttribute, which makes them meaningless; item itself
// otherwise.
func withoutLegacy(item map[string]types.AttributeValue) map[string]types.AttributeValue {
	if _, ok := item[OverrideAttribute]; !ok {
		return item
	}
	out := make(map[string]types.AttributeValue, len(item))
	for k, v := range item {
		out[k] = v
	}
	for _, a := range legacyOverrideAttributes {
		delete(out, a)
	}
	return out
}

// decode is Decode, also returning a legacy override value it dropped.
func decode(item map[string]types.AttributeValue) (circuit.Circuit, circuit.Override, error) {
	item = withoutLegacy(item)
	var r record
	if err := attributevalue.UnmarshalMap(item, &r); err != nil {
		return circuit.Circuit{}, "", fmt.Errorf("store: decode circuit item: %w", err)
	}
	c, dropped := r.circuit()
	if c.ID == "" {
		return circuit.Circuit{}, "", errors.New("store: decode circuit item: missing id")
	}
	if c.State == "" {
		c.State = circuit.Closed
	}
	if !c.State.Valid() {
		return circuit.Circuit{}, "", fmt.Errorf("store: circuit %q has unknown state %q", c.ID, c.State)
	}
	return c, dropped, nil
}

// salvage decodes what it can of the item of circuit id that decode
// refused: every attribute that does not decode is left out (zero), and an
// unknown state is left empty for the caller to fill in.
func salvage(id string, item map[string]types.AttributeValue) (circuit.Circuit, circuit.Override) {
	clean := make(map[string]types.AttributeValue, len(item))
	for name, v := range withoutLegacy(item) {
		var probe record
		if attributevalue.UnmarshalMap(map[string]types.AttributeValue{name: v}, &probe) == nil {
			clean[name] = v
		}
	}
	var r record
	_ = attributevalue.UnmarshalMap(clean, &r) // every attribute decodes alone
	c, dropped := r.circuit()
	c.ID = id
	if c.State != "" && !c.State.Valid() {
		c.State = ""
	}
	return c, dropped
}

// circuit converts r; a legacy override that is not a valid override is
// dropped with its reason and times, and returned.
func (r record) circuit() (circuit.Circuit, circuit.Override) {
	c := circuit.Circuit{
		ID:                   r.ID,
		State:                circuit.State(r.State),
		Version:              r.Version,
		UpdatedAt:            fromMillis(r.UpdatedAt),
		PreviousState:        circuit.State(r.PreviousState),
		Reason:               r.Reason,
		ConsecutiveFailures:  r.ConsecutiveFailures,
		ConsecutiveSuccesses: r.ConsecutiveSuccesses,
		OpenCount:            r.OpenCount,
		RetryAt:              fromMillis(r.RetryAt),
		Override:             circuit.Override(r.Override),
		OverrideReason:       r.OverrideReason,
		OverrideUntil:        fromMillis(r.OverrideUntil),
		OverrideAt:           fromMillis(r.OverrideAt),
	}
	if c.Override != circuit.NoOverride && !c.Override.Valid() {
		dropped := c.Override
		c.Override, c.OverrideReason, c.OverrideUntil, c.OverrideAt = circuit.NoOverride, "", time.Time{}, time.Time{}
		return c, dropped
	}
	return c, ""
}

// Encode turns a Circuit into its whole circuit item, for a PutItem by a
// tool or a test: the state machine's attributes and the override
// attribute (revision 1) with c's override, or none.
func Encode(c circuit.Circuit) (map[string]types.AttributeValue, error) {
	item, err := attributevalue.MarshalMap(record{
		ID:                   c.ID,
		State:                string(c.State),
		Version:              c.Version,
		UpdatedAt:            toMillis(c.UpdatedAt),
		PreviousState:        string(c.PreviousState),
		Reason:               c.Reason,
		ConsecutiveFailures:  c.ConsecutiveFailures,
		ConsecutiveSuccesses: c.ConsecutiveSuccesses,
		OpenCount:            c.OpenCount,
		RetryAt:              toMillis(c.RetryAt),
	})
	if err != nil {
		return nil, fmt.Errorf("store: encode circuit %q: %w", c.ID, err)
	}
	o := OverrideItem{ID: c.ID, Override: c.Override, Reason: c.OverrideReason, Until: c.OverrideUntil, At: c.OverrideAt, Rev: 1}
	if item[OverrideAttribute], err = o.encode(); err != nil {
		return nil, err
	}
	return item, nil
}

func key(id string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{KeyAttribute: &types.AttributeValueMemberS{Value: id}}
}
