// Package changeevents turns the state table's stream records into
// EventBridge events: one "Circuit State Changed" event per transition and
// one "Circuit Override Changed" event per operator override change.
//
// A transition is a record whose new image has a higher version than its
// old image; counter updates, bucket and lease items, and removals produce
// no event. Each stream record is delivered to the function at least once
// and each transition writes exactly one record, so subscribers see each
// transition once; after a retried delivery they can drop duplicates by
// (serviceId, version).
package changeevents

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
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

// FromRecord returns the events one stream record stands for: none, a
// state change, an override change, or both.
func FromRecord(r events.DynamoDBEventRecord) ([]Entry, error) {
	if r.EventName != string(events.DynamoDBOperationTypeInsert) && r.EventName != string(events.DynamoDBOperationTypeModify) {
		return nil, nil
	}
	newImage, isCircuit, err := decodeImage(r.Change.NewImage)
	if err != nil || !isCircuit {
		return nil, err
	}
	old := circuit.New(newImage.ID)
	if len(r.Change.OldImage) > 0 {
		if old, _, err = decodeImage(r.Change.OldImage); err != nil {
			return nil, err
		}
	}
	var out []Entry
	if newImage.Version > old.Version {
		out = append(out, Entry{Sequence: r.Change.SequenceNumber, DetailType: DetailTypeStateChanged, Detail: StateChanged{
			ServiceID: newImage.ID,
			From:      newImage.PreviousState,
			To:        newImage.State,
			Reason:    newImage.Reason,
			Version:   newImage.Version,
			Time:      newImage.UpdatedAt,
		}})
	}
	if newImage.Override != old.Override || !newImage.OverrideUntil.Equal(old.OverrideUntil) || newImage.OverrideReason != old.OverrideReason {
		d := OverrideChanged{ServiceID: newImage.ID, Override: newImage.Override, Previous: old.Override, Reason: newImage.OverrideReason, State: newImage.State}
		if !newImage.OverrideUntil.IsZero() {
			until := newImage.OverrideUntil
			d.Until = &until
		}
		out = append(out, Entry{Sequence: r.Change.SequenceNumber, DetailType: DetailTypeOverrideChanged, Detail: d})
	}
	return out, nil
}

// decodeImage decodes a stream image into a circuit. Items that are not
// circuits (they have no valid "state", such as counter buckets and probe
// leases) report false.
func decodeImage(image map[string]events.DynamoDBAttributeValue) (circuit.Circuit, bool, error) {
	st, ok := image["state"]
	if !ok || st.DataType() != events.DataTypeString || !circuit.State(st.String()).Valid() {
		return circuit.Circuit{}, false, nil
	}
	item, err := convertImage(image)
	if err != nil {
		return circuit.Circuit{}, false, err
	}
	c, err := store.Decode(item)
	if err != nil {
		return circuit.Circuit{}, false, err
	}
	return c, true, nil
}

// Handle is the Lambda handler for a DynamoDB stream batch. It sends the
// events of the records in order and, on the first record it cannot send,
// reports that record and every later one as failed, so Lambda retries
// from there and no event is lost or sent out of order.
func (p *Publisher) Handle(ctx context.Context, ev events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
	var resp events.DynamoDBEventResponse
	for i, r := range ev.Records {
		entries, err := FromRecord(r)
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
