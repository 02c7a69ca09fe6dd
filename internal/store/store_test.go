package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dynalite"
)

func TestGetAndGetMany(t *testing.T) {
	srv := dynalite.Start(t)
	db := srv.Client()
	s := New(db, srv.NewTable(t))
	ctx := context.Background()

	c, found, err := s.Get(ctx, "missing")
	if err != nil || found || c.ID != "missing" || c.State != circuit.Closed || c.Version != 0 {
		t.Fatalf("Get(missing) = %+v, %v, %v; want new CLOSED circuit, not found", c, found, err)
	}

	updated := time.Unix(1_700_000_000, 0).UTC()
	want := circuit.Circuit{ID: "orders", State: circuit.Open, Version: 3, UpdatedAt: updated, Reason: "3 failed checks", PreviousState: circuit.Closed}
	item, err := Encode(want)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := item["overrideUntil"]; ok {
		t.Errorf("Encode wrote overrideUntil for a zero time: %v", item["overrideUntil"])
	}
	tbl := s.Table()
	if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: &tbl, Item: item}); err != nil {
		t.Fatal(err)
	}
	got, found, err := s.Get(ctx, "orders")
	if err != nil || !found {
		t.Fatalf("Get(orders) = %v, %v", found, err)
	}
	if got.State != want.State || got.Version != want.Version || !got.UpdatedAt.Equal(updated) || got.Reason != want.Reason {
		t.Errorf("Get(orders) = %+v, want %+v", got, want)
	}

	// More than one BatchGetItem page of keys, with duplicates.
	var ids []string
	for i := 0; i < 150; i++ {
		ids = append(ids, fmt.Sprintf("svc-%d", i))
	}
	ids = append(ids, "orders", "orders")
	many, err := s.GetMany(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(many) != 1 || many["orders"].Version != 3 {
		t.Errorf("GetMany = %v, want only orders at version 3", many)
	}
}
