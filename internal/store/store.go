// Package store persists circuits in the DynamoDB state table. Reads are by
// key (GetItem, BatchGetItem), never a Scan.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
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
	// callOpts are passed to every GetItem and every conditional write.
	callOpts []func(*dynamodb.Options)
}

// New returns a Store over the named table. It logs transitions to
// slog.Default(); see WithLogger.
func New(db API, table string) *Store {
	return &Store{db: db, table: table, maxAttempts: DefaultMaxAttempts}
}

// WithLogger returns a copy of s that logs transitions and override
// changes to l.
func (s *Store) WithLogger(l *slog.Logger) *Store {
	c := *s
	c.logger = l
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

func (s *Store) log() *slog.Logger {
	if s.logger != nil {
		return s.logger
	}
	return slog.Default()
}

// Table returns the name of the table.
func (s *Store) Table() string { return s.table }

// Get reads one circuit with a strongly consistent read. A circuit that was
// never written comes back as circuit.New(id) with found false.
func (s *Store) Get(ctx context.Context, id string) (c circuit.Circuit, found bool, err error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(s.table),
		Key:            key(id),
		ConsistentRead: aws.Bool(true),
	}, s.callOpts...)
	if err != nil {
		return circuit.Circuit{}, false, fmt.Errorf("store: get circuit %q: %w", id, err)
	}
	if len(out.Item) == 0 {
		return circuit.New(id), false, nil
	}
	c, err = Decode(out.Item)
	if err != nil {
		return circuit.Circuit{}, false, err
	}
	return c, true, nil
}

// GetMany reads several circuits with BatchGetItem (see batchGet).
// Circuits that were never written are absent from the result; duplicate
// IDs are read once.
func (s *Store) GetMany(ctx context.Context, ids []string) (map[string]circuit.Circuit, error) {
	result := make(map[string]circuit.Circuit, len(ids))
	seen := make(map[string]bool, len(ids))
	unique := make([]string, 0, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			unique = append(unique, id)
		}
	}
	items, err := s.batchGet(ctx, unique)
	bad := ItemErrors{}
	for _, item := range items {
		c, derr := Decode(item)
		if derr != nil {
			if id, ok := item[KeyAttribute].(*types.AttributeValueMemberS); ok {
				bad[id.Value] = derr
			}
			continue
		}
		result[c.ID] = c
	}
	if err != nil {
		return result, fmt.Errorf("store: batch get %d circuits: %w", len(unique), err)
	}
	if len(bad) > 0 {
		return result, bad
	}
	return result, nil
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
// docs/state-model.md). Times are Unix milliseconds; zero times and empty strings are
// left out.
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

// Decode turns a table item into a Circuit.
func Decode(item map[string]types.AttributeValue) (circuit.Circuit, error) {
	var r record
	if err := attributevalue.UnmarshalMap(item, &r); err != nil {
		return circuit.Circuit{}, fmt.Errorf("store: decode circuit item: %w", err)
	}
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
	if c.ID == "" {
		return circuit.Circuit{}, errors.New("store: decode circuit item: missing id")
	}
	if c.State == "" {
		c.State = circuit.Closed
	}
	if !c.State.Valid() {
		return circuit.Circuit{}, fmt.Errorf("store: circuit %q has unknown state %q", c.ID, c.State)
	}
	return c, nil
}

// Encode turns a Circuit into a table item.
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
		Override:             string(c.Override),
		OverrideReason:       c.OverrideReason,
		OverrideUntil:        toMillis(c.OverrideUntil),
		OverrideAt:           toMillis(c.OverrideAt),
	})
	if err != nil {
		return nil, fmt.Errorf("store: encode circuit %q: %w", c.ID, err)
	}
	return item, nil
}

func key(id string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{KeyAttribute: &types.AttributeValueMemberS{Value: id}}
}
