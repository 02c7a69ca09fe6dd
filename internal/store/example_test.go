package store_test

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
)

// ReadMany tells circuits whose item cannot be decoded apart, where
// GetMany serves them only while an override decides.
func ExampleStore_ReadMany() {
	db := dynamodb.New(dynamodb.Options{Region: "us-east-1", BaseEndpoint: aws.String("http://127.0.0.1:8000")})
	st := store.New(db, "circuits")
	got, err := st.ReadMany(context.Background(), []string{"payments", "orders"})
	if err != nil {
		fmt.Println(err)
		return
	}
	now := time.Now()
	for id, r := range got {
		switch {
		case r.Unreadable != nil && r.Circuit.ActiveOverride(now) == circuit.NoOverride:
			fmt.Printf("%s: unreadable (%v); callers follow their failure policy\n", id, r.Unreadable)
		case r.Unreadable != nil:
			fmt.Printf("%s: unreadable; %s decides\n", id, r.Circuit.Override)
		default:
			fmt.Printf("%s: %s\n", id, r.Circuit.EffectiveState(now))
		}
	}
}
