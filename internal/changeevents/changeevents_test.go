package changeevents

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dynalite"
)

// recorder is a fake EventBridge that records entries and can fail.
type recorder struct {
	entries []map[string]any
	failAt  int // fail the call with this 1-based index; 0 never
	calls   int
}

func (r *recorder) PutEvents(_ context.Context, in *eventbridge.PutEventsInput, _ ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error) {
	r.calls++
	if r.calls == r.failAt {
		return nil, errors.New("throttled")
	}
	for _, e := range in.Entries {
		var detail map[string]any
		if err := json.Unmarshal([]byte(aws.ToString(e.Detail)), &detail); err != nil {
			return nil, err
		}
		detail["detailType"] = aws.ToString(e.DetailType)
		detail["source"] = aws.ToString(e.Source)
		r.entries = append(r.entries, detail)
	}
	return &eventbridge.PutEventsOutput{}, nil
}

func toStream(item map[string]types.AttributeValue) map[string]events.DynamoDBAttributeValue {
	out := map[string]events.DynamoDBAttributeValue{}
	for k, v := range item {
		switch x := v.(type) {
		case *types.AttributeValueMemberS:
			out[k] = events.NewStringAttribute(x.Value)
		case *types.AttributeValueMemberN:
			out[k] = events.NewNumberAttribute(x.Value)
		case *types.AttributeValueMemberM:
			out[k] = events.NewMapAttribute(toStream(x.Value))
		}
	}
	return out
}

// TestEventsForASequenceOfTransitions drives a circuit through real
// conditional writes against dynalite, turns each write into the stream
// record DynamoDB would emit, and checks that exactly the logged
// transitions and override changes become events.
func TestEventsForASequenceOfTransitions(t *testing.T) {
	srv := dynalite.Start(t)
	db := srv.Client()
	table := srv.NewTable(t)
	var logs bytes.Buffer
	st := store.New(db, table).WithLogger(slog.New(slog.NewJSONHandler(&logs, nil)))
	ctx := context.Background()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	settings := circuit.DefaultSettings()

	readKey := func(k string) map[string]types.AttributeValue {
		out, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: &table, Key: map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: k}}, ConsistentRead: aws.Bool(true)})
		if err != nil {
			t.Fatal(err)
		}
		return out.Item
	}
	read := func() map[string]types.AttributeValue { return readKey("orders") }
	var records []events.DynamoDBEventRecord
	recordKey := func(k string, before map[string]types.AttributeValue) {
		after := readKey(k)
		name := "MODIFY"
		if len(before) == 0 {
			name = "INSERT"
		}
		if len(after) == 0 || equalItems(before, after) {
			return // no write, no stream record
		}
		records = append(records, events.DynamoDBEventRecord{EventName: name, Change: events.DynamoDBStreamRecord{
			SequenceNumber: strings.Repeat("0", 3) + string(rune('a'+len(records))),
			Keys:           map[string]events.DynamoDBAttributeValue{"id": events.NewStringAttribute(k)},
			OldImage:       toStream(before), NewImage: toStream(after),
		}})
	}
	record := func(before map[string]types.AttributeValue) { recordKey("orders", before) }
	check := func(ok bool) {
		before := read()
		_, err := st.Apply(ctx, "orders", func(c circuit.Circuit) circuit.Decision {
			return circuit.Decide(c, settings, circuit.CheckResult{OK: ok, Reason: "test"}, now)
		})
		if err != nil {
			t.Fatal(err)
		}
		record(before)
		now = now.Add(time.Minute)
	}
	for _, ok := range []bool{false, true, false, false, false, true, true, true} {
		check(ok)
	}
	before := read()
	if _, err := st.SetOverride(ctx, "orders", circuit.ForcedOpen, "bad deploy downstream", now.Add(time.Hour), now); err != nil {
		t.Fatal(err)
	}
	record(before)
	// Override attributes written on the circuit item (as an attached
	// function could) are no operator's: no event.
	before = read()
	if _, err := db.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: &table, Key: map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: "orders"}},
		UpdateExpression: aws.String("SET #o = :o"), ExpressionAttributeNames: map[string]string{"#o": "override"}, ExpressionAttributeValues: map[string]types.AttributeValue{":o": &types.AttributeValueMemberS{Value: "FORCED_CLOSED"}}}); err != nil {
		t.Fatal(err)
	}
	record(before)
	// A counter bucket item is no circuit: no event.
	records = append(records, events.DynamoDBEventRecord{EventName: "INSERT", Change: events.DynamoDBStreamRecord{SequenceNumber: "zzz",
		NewImage: map[string]events.DynamoDBAttributeValue{"id": events.NewStringAttribute("orders#b#1"), "calls": events.NewNumberAttribute("3")}}})

	rec := &recorder{}
	resp, err := (&Publisher{Events: rec, Logger: slog.New(slog.NewJSONHandler(&bytes.Buffer{}, nil))}).Handle(ctx, events.DynamoDBEvent{Records: records})
	if err != nil || len(resp.BatchItemFailures) != 0 {
		t.Fatalf("Handle = %+v, %v", resp, err)
	}

	var transitions []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		_ = json.Unmarshal([]byte(line), &m)
		if m["msg"] == store.MsgTransition {
			transitions = append(transitions, m)
		}
	}
	if len(transitions) < 3 {
		t.Fatalf("only %d transitions logged; the sequence should open, half-open and close", len(transitions))
	}
	var stateEvents, overrideEvents []map[string]any
	for _, e := range rec.entries {
		if e["source"] != Source {
			t.Errorf("source %v", e["source"])
		}
		switch e["detailType"] {
		case DetailTypeStateChanged:
			stateEvents = append(stateEvents, e)
		case DetailTypeOverrideChanged:
			overrideEvents = append(overrideEvents, e)
		}
	}
	if len(stateEvents) != len(transitions) {
		t.Fatalf("%d state events for %d logged transitions:\n%v", len(stateEvents), len(transitions), stateEvents)
	}
	for i, tr := range transitions {
		ev := stateEvents[i]
		if ev["from"] != tr["from"] || ev["to"] != tr["to"] || ev["version"] != tr["version"] || ev["serviceId"] != "orders" || ev["reason"] == "" {
			t.Errorf("event %d = %v, transition %v", i, ev, tr)
		}
	}
	if len(overrideEvents) != 1 || overrideEvents[0]["override"] != "FORCED_OPEN" || overrideEvents[0]["reason"] != "bad deploy downstream" || overrideEvents[0]["until"] == nil || overrideEvents[0]["state"] != string(circuit.Closed) {
		t.Errorf("override events %v", overrideEvents)
	}
}

func equalItems(a, b map[string]types.AttributeValue) bool {
	ja, _ := json.Marshal(toStream(a))
	jb, _ := json.Marshal(toStream(b))
	return bytes.Equal(ja, jb)
}

// TestFailedSendRetriesFromThatRecord checks the batch-failure response.
func TestFailedSendRetriesFromThatRecord(t *testing.T) {
	mk := func(seq string, from, to string, version string) events.DynamoDBEventRecord {
		return events.DynamoDBEventRecord{EventName: "MODIFY", Change: events.DynamoDBStreamRecord{SequenceNumber: seq,
			OldImage: map[string]events.DynamoDBAttributeValue{"id": events.NewStringAttribute("a"), "state": events.NewStringAttribute(from), "version": events.NewNumberAttribute("1")},
			NewImage: map[string]events.DynamoDBAttributeValue{"id": events.NewStringAttribute("a"), "state": events.NewStringAttribute(to), "previousState": events.NewStringAttribute(from), "version": events.NewNumberAttribute(version)},
		}}
	}
	batch := events.DynamoDBEvent{Records: []events.DynamoDBEventRecord{mk("1", "CLOSED", "OPEN", "2"), mk("2", "OPEN", "HALF_OPEN", "3"), mk("3", "HALF_OPEN", "CLOSED", "4")}}
	rec := &recorder{failAt: 2}
	resp, err := (&Publisher{Events: rec, Logger: slog.New(slog.NewJSONHandler(&bytes.Buffer{}, nil))}).Handle(context.Background(), batch)
	if err != nil {
		t.Fatal(err)
	}
	var failed []string
	for _, f := range resp.BatchItemFailures {
		failed = append(failed, f.ItemIdentifier)
	}
	if strings.Join(failed, ",") != "2,3" || len(rec.entries) != 1 {
		t.Fatalf("failures %v, sent %d; want 2,3 failed and 1 sent", failed, len(rec.entries))
	}
}

func withAttr(image map[string]events.DynamoDBAttributeValue, k, v string) map[string]events.DynamoDBAttributeValue {
	out := map[string]events.DynamoDBAttributeValue{k: events.NewStringAttribute(v)}
	for a, x := range image {
		if a != k {
			out[a] = x
		}
	}
	return out
}

// TestForeignKeysIgnored checks that items whose key is not a circuit or
// override key of a valid service ID produce no event, whatever they hold.
func TestForeignKeysIgnored(t *testing.T) {
	state := func(id string) events.DynamoDBEventRecord {
		return events.DynamoDBEventRecord{EventName: "INSERT", Change: events.DynamoDBStreamRecord{SequenceNumber: id,
			Keys:     map[string]events.DynamoDBAttributeValue{"id": events.NewStringAttribute(id)},
			NewImage: map[string]events.DynamoDBAttributeValue{"id": events.NewStringAttribute(id), "state": events.NewStringAttribute("OPEN"), "previousState": events.NewStringAttribute("CLOSED"), "version": events.NewNumberAttribute("1")}}}
	}
	for _, id := range []string{"A#b#x", "A#lease#x", "A#override#x", "A#", "-a", "a b", "a\x1b[2J", strings.Repeat("a", 65)} {
		if got, err := FromRecord(state(id)); !errors.Is(err, ErrIgnored) || len(got) != 0 {
			t.Errorf("FromRecord(%q) = %v, %v; want no event, ErrIgnored", id, got, err)
		}
	}
	mismatch := state("a")
	mismatch.Change.NewImage["id"] = events.NewStringAttribute("b")
	if got, err := FromRecord(mismatch); !errors.Is(err, ErrIgnored) || len(got) != 0 {
		t.Errorf("record with mismatched key = %v, %v", got, err)
	}
	// A valid circuit key still gives its event, and Handle sends only it.
	rec := &recorder{}
	var logs bytes.Buffer
	resp, err := (&Publisher{Events: rec, Logger: slog.New(slog.NewJSONHandler(&logs, nil))}).Handle(context.Background(), events.DynamoDBEvent{Records: []events.DynamoDBEventRecord{state("A#b#x"), state("a")}})
	if err != nil || len(resp.BatchItemFailures) != 0 || len(rec.entries) != 1 || rec.entries[0]["serviceId"] != "a" {
		t.Fatalf("Handle = %+v, %v, sent %v", resp, err, rec.entries)
	}
	if !strings.Contains(logs.String(), "stream record ignored") {
		t.Errorf("ignored record not logged: %s", logs.String())
	}
}

func TestRecordsWithoutEvents(t *testing.T) {
	same := map[string]events.DynamoDBAttributeValue{"id": events.NewStringAttribute("a"), "state": events.NewStringAttribute("CLOSED"), "version": events.NewNumberAttribute("4"), "failures": events.NewNumberAttribute("1")}
	tests := []struct {
		name string
		r    events.DynamoDBEventRecord
	}{
		{"removal", events.DynamoDBEventRecord{EventName: "REMOVE", Change: events.DynamoDBStreamRecord{OldImage: same}}},
		{"counter update", events.DynamoDBEventRecord{EventName: "MODIFY", Change: events.DynamoDBStreamRecord{OldImage: same, NewImage: same}}},
		{"lease item", events.DynamoDBEventRecord{EventName: "INSERT", Change: events.DynamoDBStreamRecord{NewImage: map[string]events.DynamoDBAttributeValue{"id": events.NewStringAttribute("a#lease#0"), "holder": events.NewStringAttribute("x")}}}},
		{"bucket item with a state", events.DynamoDBEventRecord{EventName: "INSERT", Change: events.DynamoDBStreamRecord{NewImage: map[string]events.DynamoDBAttributeValue{"id": events.NewStringAttribute("a#b#1700000000"), "state": events.NewStringAttribute("OPEN"), "version": events.NewNumberAttribute("9")}}}},
		{"override item created without an override", events.DynamoDBEventRecord{EventName: "INSERT", Change: events.DynamoDBStreamRecord{NewImage: map[string]events.DynamoDBAttributeValue{"id": events.NewStringAttribute("a#override"), "kind": events.NewStringAttribute("override"), "circuitState": events.NewStringAttribute("CLOSED")}}}},
		{"in-item override change", events.DynamoDBEventRecord{EventName: "MODIFY", Change: events.DynamoDBStreamRecord{OldImage: same, NewImage: withAttr(same, "override", "FORCED_CLOSED")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromRecord(tt.r)
			if err != nil || len(got) != 0 {
				t.Fatalf("FromRecord = %v, %v; want no events", got, err)
			}
		})
	}
}

// TestRewriteOfAnUnreadableItem checks the records of the store's rewrite
// of a circuit item that could not be decoded: a transition (the version
// grew) is an event, a rewrite at the same version is none.
func TestRewriteOfAnUnreadableItem(t *testing.T) {
	bogus := map[string]events.DynamoDBAttributeValue{"id": events.NewStringAttribute("a"), "state": events.NewStringAttribute("BOGUS"), "version": events.NewNumberAttribute("4")}
	rewritten := map[string]events.DynamoDBAttributeValue{"id": events.NewStringAttribute("a"), "state": events.NewStringAttribute("CLOSED"), "version": events.NewNumberAttribute("4")}
	opened := map[string]events.DynamoDBAttributeValue{"id": events.NewStringAttribute("a"), "state": events.NewStringAttribute("OPEN"), "version": events.NewNumberAttribute("5"),
		"previousState": events.NewStringAttribute("CLOSED"), "reason": events.NewStringAttribute("3 consecutive failed checks"), "updatedAt": events.NewNumberAttribute("1700000000000")}
	tests := []struct {
		name     string
		newImage map[string]events.DynamoDBAttributeValue
		want     int
	}{
		{"rewrite at the same version", rewritten, 0},
		{"rewrite that opens the circuit", opened, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromRecord(events.DynamoDBEventRecord{EventName: "MODIFY", Change: events.DynamoDBStreamRecord{OldImage: bogus, NewImage: tt.newImage}})
			if err != nil || len(got) != tt.want {
				t.Fatalf("FromRecord = %v, %v; want %d events", got, err, tt.want)
			}
			if tt.want == 1 {
				d, ok := got[0].Detail.(StateChanged)
				if !ok || d.From != circuit.Closed || d.To != circuit.Open || d.Version != 5 {
					t.Errorf("event = %+v; want CLOSED to OPEN at version 5", got[0].Detail)
				}
			}
		})
	}
}

// TestOverrideAttributeRecords checks the override events of a circuit
// item's records: a legacy override moved into the override attribute,
// then cleared; and that a legacy override item speaks no more.
func TestOverrideAttributeRecords(t *testing.T) {
	key := map[string]events.DynamoDBAttributeValue{"id": events.NewStringAttribute("orders")}
	legacy := map[string]events.DynamoDBAttributeValue{
		"id": events.NewStringAttribute("orders"), "state": events.NewStringAttribute("OPEN"), "version": events.NewNumberAttribute("3"),
		"override": events.NewStringAttribute("FORCED_OPEN"), "overrideReason": events.NewStringAttribute("maintenance"),
	}
	withOverride := func(m map[string]events.DynamoDBAttributeValue) map[string]events.DynamoDBAttributeValue {
		out := map[string]events.DynamoDBAttributeValue{"id": legacy["id"], "state": legacy["state"], "version": legacy["version"]}
		out["operatorOverride"] = events.NewMapAttribute(m)
		return out
	}
	moved := withOverride(map[string]events.DynamoDBAttributeValue{
		"override": events.NewStringAttribute("FORCED_OPEN"), "reason": events.NewStringAttribute("maintenance"),
		"at": events.NewNumberAttribute("1767225600000"), "rev": events.NewNumberAttribute("1"),
	})
	cleared := withOverride(map[string]events.DynamoDBAttributeValue{
		"clearedAt": events.NewNumberAttribute("1767229200000"), "rev": events.NewNumberAttribute("2"),
	})
	tests := []struct {
		name string
		r    events.DynamoDBEventRecord
		want OverrideChanged
	}{
		{"legacy override moved", events.DynamoDBEventRecord{EventName: "MODIFY", Change: events.DynamoDBStreamRecord{Keys: key, OldImage: legacy, NewImage: moved}},
			OverrideChanged{ServiceID: "orders", Override: circuit.ForcedOpen, Reason: "maintenance", State: circuit.Open}},
		{"cleared", events.DynamoDBEventRecord{EventName: "MODIFY", Change: events.DynamoDBStreamRecord{Keys: key, OldImage: moved, NewImage: cleared}},
			OverrideChanged{ServiceID: "orders", Previous: circuit.ForcedOpen, State: circuit.Open}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromRecord(tt.r)
			if err != nil || len(got) != 1 || got[0].DetailType != DetailTypeOverrideChanged {
				t.Fatalf("FromRecord = %+v, %v; want one override event", got, err)
			}
			if d := got[0].Detail.(OverrideChanged); d != tt.want {
				t.Errorf("detail = %+v, want %+v", d, tt.want)
			}
		})
	}
	bad := events.DynamoDBEventRecord{EventName: "MODIFY", Change: events.DynamoDBStreamRecord{Keys: key, OldImage: moved, NewImage: withOverride(map[string]events.DynamoDBAttributeValue{
		"override": events.NewStringAttribute("SOMETIMES"), "rev": events.NewNumberAttribute("3")})}}
	if got, err := FromRecord(bad); err == nil || len(got) != 0 {
		t.Errorf("override attribute with an unknown override = %v, %v; want an error", got, err)
	}
	oldItem := events.DynamoDBEventRecord{EventName: "INSERT", Change: events.DynamoDBStreamRecord{NewImage: map[string]events.DynamoDBAttributeValue{
		"id": events.NewStringAttribute("orders#override"), "override": events.NewStringAttribute("FORCED_CLOSED")}}}
	if got, err := FromRecord(oldItem); err != nil || len(got) != 0 {
		t.Errorf("legacy override item = %v, %v; want no event", got, err)
	}
}
