package store

import (
	"errors"
	"net"
	"net/http/httptrace"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// permanentCodes are DynamoDB error codes that repeating the same request
// cannot fix: the caller lacks the permission, the request is invalid, or
// the table does not exist.
var permanentCodes = map[string]bool{
	"AccessDeniedException":     true,
	"ValidationException":       true,
	"ResourceNotFoundException": true,
}

// throttlingCodes are DynamoDB error codes that refuse a request for its
// rate, before applying it.
var throttlingCodes = map[string]bool{
	"ProvisionedThroughputExceededException": true,
	"ThrottlingException":                    true,
	"RequestLimitExceeded":                   true,
}

// Permanent reports whether err is a DynamoDB refusal that a retry of the
// same request cannot turn into a success (access denied, validation
// error, missing table). Throttling, timeouts and network errors are not
// permanent.
func Permanent(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && permanentCodes[ae.ErrorCode()]
}

// Throttled reports whether err is DynamoDB refusing a request for its
// rate (ProvisionedThroughputExceededException, ThrottlingException,
// RequestLimitExceeded): the request was not applied.
func Throttled(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && throttlingCodes[ae.ErrorCode()]
}

// Ambiguous reports whether a failed write may nevertheless have been
// applied, so that sending it again could apply it twice: a timeout or
// cancellation once the request may have been sent, a server error (5xx,
// such as InternalServerError), a connection reset or an unreadable
// answer, and any error it cannot place. A write is known not applied when
// DynamoDB refused it (throttling, or any other 4xx answer such as access
// denied), or when it never left: a failed dial or name lookup, a request
// that could not be built or signed, or a call of this package that ended
// (its context too) before it had a connection to send on. nil is not
// ambiguous.
func Ambiguous(err error) bool {
	if err == nil {
		return false
	}
	var ns *notSentError
	if errors.As(err, &ns) {
		return false
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		if throttlingCodes[ae.ErrorCode()] || permanentCodes[ae.ErrorCode()] {
			return false
		}
		var re *smithyhttp.ResponseError
		if errors.As(err, &re) {
			s := re.HTTPStatusCode()
			return s < 400 || s >= 500
		}
		return true
	}
	var se *smithy.SerializationError
	if errors.As(err, &se) && !errors.As(err, new(*smithyhttp.ResponseError)) {
		return false // the request could not be built
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return false
	}
	var de *net.DNSError
	return !errors.As(err, &de)
}

// notSentError marks the error of a call whose last attempt never had a
// connection to send its request on: it cannot have been applied.
type notSentError struct{ err error }

func (e *notSentError) Error() string { return e.err.Error() + " (not sent)" }
func (e *notSentError) Unwrap() error { return e.err }

// sendTrace follows the HTTP attempts of one call, to tell whether its
// last attempt may have sent its request: an attempt asks for a
// connection (GetConn) before anything of it is written, and gets one
// (GotConn) on the same goroutine before its request is written.
type sendTrace struct{ connected atomic.Bool }

func (t *sendTrace) trace() *httptrace.ClientTrace {
	return &httptrace.ClientTrace{
		GetConn: func(string) { t.connected.Store(false) },
		GotConn: func(httptrace.GotConnInfo) { t.connected.Store(true) },
	}
}

// settle marks err as not sent when the call's last attempt had no
// connection, or when the call ended while the SDK waited to try again
// or fetched credentials (aws.RequestCanceledError): the attempt under way
// had sent nothing, and the SDK retries only throttled writes (see
// onlyThrottlingRetried), which were not applied.
func (t *sendTrace) settle(err error) error {
	if err == nil {
		return nil
	}
	var rc *aws.RequestCanceledError
	if !t.connected.Load() || errors.As(err, &rc) {
		return &notSentError{err}
	}
	return err
}
