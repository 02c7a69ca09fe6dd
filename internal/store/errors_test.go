package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"syscall"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

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

// opErr wraps err as the SDK returns the error of an UpdateItem call.
func opErr(err error) error {
	return fmt.Errorf("store: add counts to svc#b#1#0: %w", &smithy.OperationError{ServiceID: "DynamoDB", OperationName: "UpdateItem", Err: err})
}

// answered is the error of an answer with HTTP status status.
func answered(status int, err error) error {
	return &awshttp.ResponseError{ResponseError: &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
		Err:      err,
	}}
}

// sendFailed is the error of a request whose HTTP round trip failed.
func sendFailed(err error) error {
	return &smithyhttp.RequestSendError{Err: &url.Error{Op: "Post", URL: "https://dynamodb.eu-west-1.amazonaws.com/", Err: err}}
}

func TestAmbiguous(t *testing.T) {
	throttled := answered(400, &types.ProvisionedThroughputExceededException{Message: aws.String("rate")})
	tests := []struct {
		name string
		err  error
		want bool
	}{
		// Refused by DynamoDB before it applied anything.
		{"throttled", opErr(throttled), false},
		{"throttled, retries exhausted", opErr(&retry.MaxAttemptsError{Attempt: 3, Err: throttled}), false},
		{"throttling exception", opErr(answered(400, &smithy.GenericAPIError{Code: "ThrottlingException"})), false},
		{"request limit", opErr(answered(400, &types.RequestLimitExceeded{})), false},
		{"access denied", opErr(answered(400, &smithy.GenericAPIError{Code: "AccessDeniedException"})), false},
		{"other 4xx", opErr(answered(400, &types.ConditionalCheckFailedException{})), false},
		// Never sent.
		{"connection refused", opErr(sendFailed(&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED})), false},
		{"name lookup", opErr(sendFailed(&net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", IsNotFound: true}})), false},
		{"not serialized", opErr(&smithy.SerializationError{Err: errors.New("bad value")}), false},
		{"no connection before the deadline", opErr(&notSentError{&smithy.CanceledError{Err: context.DeadlineExceeded}}), false},
		// Maybe applied.
		{"internal server error", opErr(answered(500, &types.InternalServerError{})), true},
		{"503, unknown code", opErr(answered(503, &smithy.GenericAPIError{Code: "ServiceUnavailable"})), true},
		{"5xx retries exhausted", opErr(&retry.MaxAttemptsError{Attempt: 3, Err: answered(500, &types.InternalServerError{})}), true},
		{"API error, no status", &smithy.GenericAPIError{Code: "InternalServerError"}, true},
		{"timeout after sending", opErr(&smithy.CanceledError{Err: context.DeadlineExceeded}), true},
		{"bare deadline", context.DeadlineExceeded, true},
		{"connection reset", opErr(sendFailed(&net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET})), true},
		{"EOF reading the answer", opErr(sendFailed(io.ErrUnexpectedEOF)), true},
		{"answer unreadable", opErr(&smithy.DeserializationError{Err: io.ErrUnexpectedEOF}), true},
		{"unknown", errors.New("something else"), true},
		{"nil", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Ambiguous(tt.err); got != tt.want {
				t.Errorf("Ambiguous(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

// A call's last attempt that never had a connection, or that ended while
// the SDK waited to retry a throttled write, sent nothing.
func TestSendTraceSettle(t *testing.T) {
	timeout := opErr(&smithy.CanceledError{Err: context.DeadlineExceeded})
	tests := []struct {
		name  string
		steps string // G: GetConn, C: GotConn
		err   error
		want  bool // Ambiguous
	}{
		{"no attempt", "", timeout, false},
		{"signing failed", "", opErr(errors.New("failed to sign request")), false},
		{"dialing", "G", timeout, false},
		{"sent", "GC", timeout, true},
		{"answered, unreadable", "GC", opErr(&smithy.DeserializationError{Err: io.EOF}), true},
		{"throttled, then dialing", "GCG", timeout, false},
		{"throttled, waiting to retry", "GC", opErr(&aws.RequestCanceledError{Err: context.DeadlineExceeded}), false},
		{"throttled, then sent", "GCGC", timeout, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &sendTrace{}
			ct := tr.trace()
			for _, step := range tt.steps {
				if step == 'G' {
					ct.GetConn("127.0.0.1:8000")
				} else {
					ct.GotConn(httptrace.GotConnInfo{})
				}
			}
			if got := Ambiguous(tr.settle(tt.err)); got != tt.want {
				t.Errorf("Ambiguous = %v, want %v", got, tt.want)
			}
		})
	}
	if (&sendTrace{}).settle(nil) != nil {
		t.Error("settle(nil) != nil")
	}
}
