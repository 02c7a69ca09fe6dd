package store

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/aws/smithy-go"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dynalite"
)

func TestPermanent(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"access denied", &smithy.GenericAPIError{Code: "AccessDeniedException"}, true},
		{"validation, wrapped", fmt.Errorf("store: add: %w", &smithy.GenericAPIError{Code: "ValidationException"}), true},
		{"missing table", &smithy.GenericAPIError{Code: "ResourceNotFoundException"}, true},
		{"throttled", &smithy.GenericAPIError{Code: "ProvisionedThroughputExceededException"}, false},
		{"conditional check", &smithy.GenericAPIError{Code: "ConditionalCheckFailedException"}, false},
		{"timeout", context.DeadlineExceeded, false},
		{"plain", errors.New("connection refused"), false},
		{"nil", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Permanent(tt.err); got != tt.want {
				t.Errorf("Permanent(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

// A write to a table that does not exist fails permanently on a real
// DynamoDB-compatible server.
func TestPermanentFromServer(t *testing.T) {
	srv := dynalite.Start(t)
	st := New(srv.Client(), "no-such-table")
	_, _, err := st.Get(context.Background(), "svc")
	if err == nil || !Permanent(err) {
		t.Fatalf("Get on a missing table: %v, want a permanent error", err)
	}
}
