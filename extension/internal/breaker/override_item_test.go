package breaker

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
)

// TestOverrideItemDecidesForTheExtension checks the extension's view of a
// circuit: the override item wins over override attributes on the circuit
// item (which an attached function can write), and a table written by
// earlier versions, with the override on the circuit item only, still
// works.
func TestOverrideItemDecidesForTheExtension(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	now := time.Now()
	db := f.db
	table := f.st.Table()
	// forge writes override attributes on a circuit item, as a handler
	// with the attached function's grant could.
	forge := func(id string, o circuit.Override) {
		t.Helper()
		if _, err := db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName:                 &table,
			Key:                       map[string]types.AttributeValue{store.KeyAttribute: &types.AttributeValueMemberS{Value: id}},
			UpdateExpression:          aws.String("SET #o = :o, #r = :r"),
			ExpressionAttributeNames:  map[string]string{"#o": "override", "#r": "overrideReason"},
			ExpressionAttributeValues: map[string]types.AttributeValue{":o": &types.AttributeValueMemberS{Value: string(o)}, ":r": &types.AttributeValueMemberS{Value: "in-item"}},
		}); err != nil {
			t.Fatal(err)
		}
	}

	// "forced": an operator's FORCED_OPEN, then a forged in-item
	// FORCED_CLOSED on a CLOSED circuit.
	f.put(t, circuit.Circuit{ID: "forced", State: circuit.Closed, Version: 1})
	if _, err := f.st.SetOverride(ctx, "forced", circuit.ForcedOpen, "bad deploy", time.Time{}, now); err != nil {
		t.Fatal(err)
	}
	forge("forced", circuit.ForcedClosed)
	// "legacy": a table written by earlier versions, FORCED_OPEN in-item.
	f.put(t, circuit.Circuit{ID: "legacy", State: circuit.Closed, Version: 1})
	forge("legacy", circuit.ForcedOpen)
	// "overridden-only": no circuit item, an operator's FORCED_OPEN.
	if _, err := f.st.SetOverride(ctx, "overridden-only", circuit.ForcedOpen, "not live yet", time.Time{}, now); err != nil {
		t.Fatal(err)
	}

	for _, batch := range [][]string{{"forced"}, {"legacy"}, {"overridden-only"}, {"forced", "legacy", "overridden-only"}} {
		_, fresh := f.extension(nil)
		for i, d := range fresh.LookupMany(ctx, batch) {
			if !d.Known || d.Stale || d.Allowed || d.State != circuit.Open {
				t.Errorf("lookup of %s (batch %v) = %+v; want a denial, state OPEN", batch[i], batch, d)
			}
		}
	}
}
