package store

import "github.com/aws/aws-sdk-go-v2/service/dynamodb"

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
