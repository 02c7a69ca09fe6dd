package store

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

// WithoutRetries returns a copy of s whose Get, Apply, Write, ClaimLease
// and ReleaseLease make a single attempt per call: the SDK does not retry
// them, so they never draw on the client's retry quota, which the other
// calls share. It suits callers that back off on their own, such as the
// extension's lookups, which pace their table writes per circuit and would
// rather answer at once than wait for SDK back-offs.
func (s *Store) WithoutRetries() *Store {
	c := *s
	c.callOpts = append(c.callOpts[:len(c.callOpts):len(c.callOpts)], func(o *dynamodb.Options) { o.RetryMaxAttempts = 1 })
	return &c
}

// throttleRetryer is a retryer that retries only throttled requests,
// which DynamoDB refused before applying them, with the back-off, attempts
// and retry quota of the retryer it wraps.
type throttleRetryer struct{ aws.Retryer }

// IsErrorRetryable implements aws.Retryer.
func (r throttleRetryer) IsErrorRetryable(err error) bool {
	return Throttled(err) && r.Retryer.IsErrorRetryable(err)
}

// GetAttemptToken implements aws.RetryerV2.
func (r throttleRetryer) GetAttemptToken(ctx context.Context) (func(error) error, error) {
	if v2, ok := r.Retryer.(aws.RetryerV2); ok {
		return v2.GetAttemptToken(ctx)
	}
	return r.GetInitialToken(), nil
}

// onlyThrottlingRetried makes the SDK retry a call only when it was
// throttled. A write of atomic ADDs whose answer was lost (a timeout, a
// 5xx, a reset connection) may have been applied: sent again, it would
// add its counts twice.
func onlyThrottlingRetried(o *dynamodb.Options) {
	if o.Retryer != nil {
		o.Retryer = throttleRetryer{o.Retryer}
	}
}
