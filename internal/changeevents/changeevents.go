// Package changeevents turns the state table's stream records into
// EventBridge events: one "Circuit State Changed" event per transition and
// one "Circuit Override Changed" event per operator override change.
//
// A transition is a record of a circuit item ("<id>") whose new image has
// a higher version than its old image; an override change is a record of
// a circuit item whose override attribute (store.OverrideAttribute, which
// attached functions cannot write) changed its override, reason or
// expiry. Counter updates, bucket, lease and read-copy items, legacy
// override items ("<id>#override", no longer written), removals and items
// of any other key produce no event. Each stream record is delivered to the function at least once
// and each transition writes exactly one record, so subscribers see each
// transition once; after a retried delivery they can drop duplicates by
// (serviceId, version).
package changeevents

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
)

// Source is the events' source field.
const Source = "lambda-circuit-breaker"

// Detail types of the events.
const (
	DetailTypeStateChanged    = "Circuit State Changed"
	DetailTypeOverrideChanged = "Circuit Override Changed"
)

// StateChanged is the detail of a "Circuit State Changed" event.
type StateChanged struct {
	// ServiceID names the circuit.
	ServiceID string `json:"serviceId"`
	// From is the state the transition left.
	From circuit.State `json:"from"`
	// To is the state it entered.
	To circuit.State `json:"to"`
	// Reason says why.
	Reason string `json:"reason"`
	// Version is the circuit's version after the transition.
	Version int64 `json:"version"`
	// Time is when the transition happened.
	Time time.Time `json:"time"`
}

// OverrideChanged is the detail of a "Circuit Override Changed" event.
type OverrideChanged struct {
	// ServiceID names the circuit.
	ServiceID string `json:"serviceId"`
	// Override is the new override, "" when cleared.
	Override circuit.Override `json:"override"`
	// Previous is the override before the change.
	Previous circuit.Override `json:"previous"`
	// Reason is the operator's reason.
	Reason string `json:"reason,omitempty"`
	// Until is when the override expires; absent means never.
	Until *time.Time `json:"until,omitempty"`
	// State is the circuit's own state under the override.
	State circuit.State `json:"state"`
}

// PutEventsAPI is the part of the EventBridge client the publisher uses.
type PutEventsAPI interface {
	PutEvents(ctx context.Context, in *eventbridge.PutEventsInput, opts ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error)
}

// Publisher sends the events of stream records to one event bus.
type Publisher struct {
	// Events sends the events.
	Events PutEventsAPI
	// Bus is the event bus name or ARN; "" means the default bus.
	Bus string
	// Logger logs skipped records and failures; nil means slog.Default().
	Logger *slog.Logger
}

// Entry is one event to send, with the stream record it came from.
type Entry struct {
	// Sequence is the stream record's sequence number.
	Sequence string
	// DetailType is the event's detail type.
	DetailType string
	// Detail is the event's detail.
	Detail any
}

// ErrIgnored marks a stream record that is neither a circuit item nor an
// override item of a valid service ID, such as an item written by hand or
// by a function with a wide grant. It produces no event.
var ErrIgnored = errors.New("changeevents: not a circuit or override item")

// FromRecord returns the events one stream record of a circuit item
// "<id>" stands for: none, a state change, an override change, or both.
// Counter buckets, probe leases, read copies, legacy override items and
// removals produce none; a key that is not one of the table's item kinds,
// or whose service ID is invalid, returns an error wrapping ErrIgnored.
// Legacy override attributes on a circuit item produce no event: only the
// override attribute, which attached functions cannot write, speaks for
// an operator.
func FromRecord(r events.DynamoDBEventRecord) ([]Entry, error) {
	if r.EventName != string(events.DynamoDBOperationTypeInsert) && r.EventName != string(events.DynamoDBOperationTypeModify) {
		return nil, nil
	}
	k, err := recordKey(r)
	if err != nil {
		return nil, err
	}
	id, kind, err := store.ParseKey(k)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIgnored, err)
	}
	if kind != store.KindCircuit {
		return nil, nil
	}
	overrides, oerr := overrideEntries(r, id)
	states, serr := stateEntries(r, id)
	entries := append(overrides, states...)
	if len(entries) == 0 {
		return nil, errors.Join(oerr, serr)
	}
	return entries, nil
}

// recordKey is the record's partition key, which every image it carries
// must match.
func recordKey(r events.DynamoDBEventRecord) (string, error) {
	var k string
	if v, ok := r.Change.Keys[store.KeyAttribute]; ok && v.DataType() == events.DataTypeString {
		k = v.String()
	}
	for _, image := range []map[string]events.DynamoDBAttributeValue{r.Change.NewImage, r.Change.OldImage} {
		v, ok := image[store.KeyAttribute]
		if !ok {
			continue
		}
		if v.DataType() != events.DataTypeString || (k != "" && v.String() != k) {
			return "", fmt.Errorf("%w: the images' key does not match the record's", ErrIgnored)
		}
		k = v.String()
	}
	if k == "" {
		return "", fmt.Errorf("%w: no string key", ErrIgnored)
	}
	return k, nil
}

// stateEntries is the state change of a circuit item's record, if its
// version went up.
func stateEntries(r events.DynamoDBEventRecord, id string) ([]Entry, error) {
	newImage, err := decodeCircuit(r.Change.NewImage)
	if err != nil {
		return nil, err
	}
	old := circuit.New(id)
	if len(r.Change.OldImage) > 0 {
		if old, err = decodeCircuit(r.Change.OldImage); err != nil {
			// An old image that cannot be decoded (attached functions
			// may write the item) is one the store rewrote: its version
			// alone tells whether the rewrite was a transition.
			if old.Version, err = imageVersion(r.Change.OldImage); err != nil {
				return nil, err
			}
		}
	}
	if newImage.Version <= old.Version {
		return nil, nil
	}
	return []Entry{{Sequence: r.Change.SequenceNumber, DetailType: DetailTypeStateChanged, Detail: StateChanged{
		ServiceID: id,
		From:      newImage.PreviousState,
		To:        newImage.State,
		Reason:    newImage.Reason,
		Version:   newImage.Version,
		Time:      newImage.UpdatedAt,
	}}}, nil
}

// overrideEntries is the override change of a circuit item's record, if
// its override attribute's override, reason or expiry changed. An old
// image without the attribute, or with one that does not decode, counts
// as no override.
func overrideEntries(r events.DynamoDBEventRecord, id string) ([]Entry, error) {
	item, err := convertImage(r.Change.NewImage)
	if err != nil {
		return nil, err
	}
	newOverride, found, err := store.DecodeOverrideAttribute(item)
	if err != nil || !found {
		return nil, err
	}
	var old store.OverrideItem
	if len(r.Change.OldImage) > 0 {
		if oldItem, err := convertImage(r.Change.OldImage); err == nil {
			old, _, _ = store.DecodeOverrideAttribute(oldItem)
		}
	}
	if newOverride.Override == old.Override && newOverride.Until.Equal(old.Until) && newOverride.Reason == old.Reason {
		return nil, nil
	}
	state := circuit.Closed
	if v, ok := item["state"].(*types.AttributeValueMemberS); ok && circuit.State(v.Value).Valid() {
		state = circuit.State(v.Value)
	}
	d := OverrideChanged{ServiceID: id, Override: newOverride.Override, Previous: old.Override, Reason: newOverride.Reason, State: state}
	if !newOverride.Until.IsZero() {
		until := newOverride.Until
		d.Until = &until
	}
	return []Entry{{Sequence: r.Change.SequenceNumber, DetailType: DetailTypeOverrideChanged, Detail: d}}, nil
}

func decodeCircuit(image map[string]events.DynamoDBAttributeValue) (circuit.Circuit, error) {
	item, err := convertImage(image)
	if err != nil {
		return circuit.Circuit{}, err
	}
	return store.Decode(item)
}

// imageVersion is the version attribute of an image (0 when absent).
func imageVersion(image map[string]events.DynamoDBAttributeValue) (int64, error) {
	v, ok := image["version"]
	if !ok {
		return 0, nil
	}
	if v.DataType() != events.DataTypeNumber {
		return 0, fmt.Errorf("changeevents: old image's version is not a number")
	}
	n, err := v.Int64()
	if err != nil {
		return 0, fmt.Errorf("changeevents: old image's version: %w", err)
	}
	return n, nil
}

// Handle is the Lambda handler for a DynamoDB stream batch. It sends the
// events of the records in order and, on the first record it cannot send,
// reports that record and every later one as failed, so Lambda retries
// from there and no event is lost or sent out of order.
func (p *Publisher) Handle(ctx context.Context, ev events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
	var resp events.DynamoDBEventResponse
	for i, r := range ev.Records {
		entries, err := FromRecord(r)
		if errors.Is(err, ErrIgnored) {
			p.logger().WarnContext(ctx, "stream record ignored", slog.String("sequence", r.Change.SequenceNumber), slog.String("error", err.Error()))
			continue
		}
		if err != nil {
			// A record that cannot be decoded will never decode: log it and
			// go on rather than block the shard.
			p.logger().ErrorContext(ctx, "stream record skipped", slog.String("sequence", r.Change.SequenceNumber), slog.String("error", err.Error()))
			continue
		}
		if err := p.send(ctx, entries); err != nil {
			p.logger().ErrorContext(ctx, "events not sent; the batch is retried from this record", slog.String("sequence", r.Change.SequenceNumber), slog.String("error", err.Error()))
			for _, rest := range ev.Records[i:] {
				resp.BatchItemFailures = append(resp.BatchItemFailures, events.DynamoDBBatchItemFailure{ItemIdentifier: rest.Change.SequenceNumber})
			}
			return resp, nil
		}
	}
	return resp, nil
}

func (p *Publisher) send(ctx context.Context, entries []Entry) error {
	if len(entries) == 0 {
		return nil
	}
	in := &eventbridge.PutEventsInput{}
	for _, e := range entries {
		detail, err := json.Marshal(e.Detail)
		if err != nil {
			return fmt.Errorf("changeevents: encode detail: %w", err)
		}
		entry := ebtypes.PutEventsRequestEntry{
			Source:     aws.String(Source),
			DetailType: aws.String(e.DetailType),
			Detail:     aws.String(string(detail)),
		}
		if p.Bus != "" {
			entry.EventBusName = aws.String(p.Bus)
		}
		in.Entries = append(in.Entries, entry)
	}
	out, err := p.Events.PutEvents(ctx, in)
	if err != nil {
		return fmt.Errorf("changeevents: put %d events: %w", len(in.Entries), err)
	}
	if out.FailedEntryCount > 0 {
		// The entries of one record are sent together; a partial failure
		// resends them all, so a subscriber may see one twice.
		for _, e := range out.Entries {
			if e.ErrorCode != nil {
				return fmt.Errorf("changeevents: event rejected: %s: %s", aws.ToString(e.ErrorCode), aws.ToString(e.ErrorMessage))
			}
		}
		return fmt.Errorf("changeevents: %d events rejected", out.FailedEntryCount)
	}
	for _, e := range entries {
		p.logger().InfoContext(ctx, "event sent", slog.String("detailType", e.DetailType), slog.Any("detail", e.Detail))
	}
	return nil
}

func (p *Publisher) logger() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return slog.Default()
}
