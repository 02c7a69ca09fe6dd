package cache

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dynalite"
)

// An unreadable circuit item in a batched read leaves the other circuits
// of the batch fresh; only its own circuit falls to the failure policy.
func TestUnreadableItemFailsOnlyItsCircuit(t *testing.T) {
	srv := dynalite.Start(t)
	table := srv.NewTable(t)
	st := store.New(srv.Client(), table)
	ctx := context.Background()
	for _, id := range []string{"a", "b"} {
		if err := st.Write(ctx, circuit.New(id), circuit.Circuit{ID: id, State: circuit.Open, Version: 1}, circuit.Transition); err != nil {
			t.Fatal(err)
		}
	}
	_, err := srv.Client().PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: map[string]types.AttributeValue{
		"id":      &types.AttributeValueMemberS{Value: "bad"},
		"state":   &types.AttributeValueMemberS{Value: "DISABLED"},
		"version": &types.AttributeValueMemberN{Value: "1"},
	}})
	if err != nil {
		t.Fatal(err)
	}

	c := New(st, Options{FailAllow: false, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	got := c.LookupMany(ctx, []string{"a", "b", "bad", "never-written"})
	for _, d := range got {
		switch d.ID {
		case "a", "b":
			if d.Stale || d.FailMode || d.State != circuit.Open || d.Allowed {
				t.Errorf("%s: %+v, want a fresh OPEN answer", d.ID, d)
			}
		case "never-written":
			if d.Stale || d.FailMode || d.State != circuit.Closed || !d.Allowed {
				t.Errorf("%s: %+v, want a fresh CLOSED answer", d.ID, d)
			}
		case "bad":
			if !d.FailMode || d.Allowed {
				t.Errorf("%s: %+v, want the failure policy (deny)", d.ID, d)
			}
		}
	}
}
