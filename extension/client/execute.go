package client

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrTimeout is passed to the fallback when a call runs past the timeout
// set with WithCallTimeout; the error also matches
// context.DeadlineExceeded with errors.Is.
var ErrTimeout = errors.New("circuit breaker: call timed out")

// timeoutError is the error of a call cut off by WithCallTimeout.
type timeoutError struct {
	after time.Duration
	err   error // the call's own error, if any
}

func (e *timeoutError) Error() string {
	if e.err != nil {
		return fmt.Sprintf("%s after %s: %v", ErrTimeout, e.after, e.err)
	}
	return fmt.Sprintf("%s after %s", ErrTimeout, e.after)
}

func (e *timeoutError) Is(target error) bool {
	return target == ErrTimeout || target == context.DeadlineExceeded
}

func (e *timeoutError) Unwrap() error { return e.err }

// CallOption configures one guarded call (Do, Execute).
type CallOption func(*callOptions)

type callOptions struct {
	isFailure func(error) bool
	timeout   time.Duration
}

// IsFailure says which of the call's errors count as failures of the
// service. An error for which isFailure returns false (bad input found
// before the service was called, a 404 that is an answer, ...) is
// returned unchanged: the fallback does not run and no outcome is
// reported. Default: every error counts.
func IsFailure(isFailure func(err error) bool) CallOption {
	return func(o *callOptions) { o.isFailure = isFailure }
}

// WithCallTimeout bounds the call: its context is cancelled after d. When
// the call has not succeeded by then, it counts as a failure with a
// latency of d, and the fallback runs with an error that matches
// ErrTimeout and context.DeadlineExceeded. The call must return when its
// context is done, as Go functions doing I/O do. Default: no bound but
// the caller's context.
func WithCallTimeout(d time.Duration) CallOption {
	return func(o *callOptions) { o.timeout = d }
}

// Execute asks the extension whether the service id may be called, runs
// call if so and returns its value; otherwise it returns what fallback
// returns for an *OpenError (errors.Is ErrOpen). When call fails, fallback
// runs with call's error. A nil fallback returns the zero value and the
// error. When the extension cannot answer, the failure policy decides.
//
// After call returns, Execute reports its outcome as Do does: success
// when call returned nil, and its latency. Not every error is a failure
// of the service:
//   - when ctx (the caller's) was cancelled or ran out before call
//     returned, the caller gave up, not the service: the error is
//     returned unchanged and nothing is reported;
//   - errors for which the IsFailure option returns false are returned
//     unchanged and nothing is reported.
//
// When CIRCUIT_BREAKER_DISABLED=true, Execute runs call without asking and
// reports nothing.
func Execute[T any](ctx context.Context, c *Client, id string, call func(ctx context.Context) (T, error), fallback func(ctx context.Context, err error) (T, error), opts ...CallOption) (T, error) {
	var o callOptions
	for _, opt := range opts {
		opt(&o)
	}
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	if c.disabled {
		return call(ctx)
	}
	st, err := c.State(ctx, id)
	allowed, answered := c.failAllow, err == nil
	if answered {
		allowed = st.Allowed
	} else {
		if ctx.Err() != nil {
			return zero, ctx.Err()
		}
		st = Circuit{ID: id, State: "OPEN", FailMode: true, Reason: "extension unavailable: " + err.Error()}
	}
	if !allowed {
		return runFallback(ctx, fallback, &OpenError{Circuit: st})
	}
	callCtx := ctx
	if o.timeout > 0 {
		var cancel context.CancelFunc
		callCtx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	start := time.Now()
	v, callErr := call(callCtx)
	latency := time.Since(start)
	switch {
	case callErr == nil:
	case ctx.Err() != nil:
		// The caller gave up: no outcome of the service's.
		return v, callErr
	case o.timeout > 0 && callCtx.Err() != nil:
		callErr, latency = &timeoutError{after: o.timeout, err: callErr}, o.timeout
	case o.isFailure != nil && !o.isFailure(callErr):
		return v, callErr
	}
	if answered {
		_, _ = c.Report(ctx, id, callErr == nil, latency, st.ProbeToken)
	}
	if callErr != nil {
		return runFallback(ctx, fallback, callErr)
	}
	return v, nil
}

func runFallback[T any](ctx context.Context, fallback func(context.Context, error) (T, error), err error) (T, error) {
	if fallback == nil {
		var zero T
		return zero, err
	}
	return fallback(ctx, err)
}
