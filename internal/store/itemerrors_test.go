package store

import (
	"context"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dynalite"
)

// One unreadable item fails only its own circuit: GetMany returns every
// other circuit and names the unreadable one in an ItemErrors.
func TestGetManySkipsUnreadableItems(t *testing.T) {
	srv := dynalite.Start(t)
	table := srv.NewTable(t)
	st := New(srv.Client(), table)
	ctx := context.Background()
	ids := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	for _, id := range ids {
		if err := st.Write(ctx, circuit.New(id), circuit.Circuit{ID: id, State: circuit.Open, Version: 1}, circuit.Transition); err != nil {
			t.Fatal(err)
		}
	}
	putUnreadableCircuit(t, srv.Client(), table, "bad")

	got, err := st.GetMany(ctx, append(append([]string{}, ids...), "bad", "never-written"))
	var ie ItemErrors
	if !errors.As(err, &ie) || len(ie) != 1 || ie["bad"] == nil {
		t.Fatalf("GetMany error = %v, want ItemErrors naming only %q", err, "bad")
	}
	if len(got) != len(ids) {
		t.Errorf("GetMany returned %d circuits, want the %d readable ones", len(got), len(ids))
	}
	for _, id := range ids {
		if got[id].State != circuit.Open {
			t.Errorf("circuit %q = %+v, want OPEN", id, got[id])
		}
	}
	if _, ok := got["never-written"]; ok {
		t.Error("a circuit never written is in the result")
	}
}

// putUnreadableCircuit writes a circuit item with a state this version
// does not know, as a hand edit or a newer writer could.
func putUnreadableCircuit(t *testing.T, db *dynamodb.Client, table, id string) {
	t.Helper()
	_, err := db.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: aws.String(table), Item: map[string]types.AttributeValue{
		"id":      &types.AttributeValueMemberS{Value: id},
		"state":   &types.AttributeValueMemberS{Value: "DISABLED"},
		"version": &types.AttributeValueMemberN{Value: "1"},
	}})
	if err != nil {
		t.Fatal(err)
	}
}
