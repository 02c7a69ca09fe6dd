// Package dbfault injects faults into a DynamoDB client's HTTP traffic,
// below the SDK, so that the SDK's own retries run as they do against
// DynamoDB: a write whose answer is lost, or a throttled table.
package dbfault

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

// Action is what the transport does with one request.
type Action int

// The actions.
const (
	// Pass forwards the request and returns its answer.
	Pass Action = iota
	// LoseAnswer forwards the request, so that DynamoDB applies it, then
	// drops the answer and returns a 500 InternalServerError instead, which
	// the SDK retries.
	LoseAnswer
	// Throttle returns a ProvisionedThroughputExceededException without
	// forwarding the request.
	Throttle
)

// Transport is an http.RoundTripper that applies Fault to every DynamoDB
// request and counts the requests by operation.
type Transport struct {
	// Base forwards requests (default http.DefaultTransport).
	Base http.RoundTripper
	// Fault decides the action for a request of operation op (such as
	// "UpdateItem") with the JSON body body; nil passes every request.
	Fault func(op string, body []byte) Action

	mu     sync.Mutex
	counts map[string]int
}

// Count returns how many requests of operation op reached the transport,
// SDK retries included.
func (t *Transport) Count(op string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.counts[op]
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	op := req.Header.Get("X-Amz-Target")
	if i := strings.LastIndexByte(op, '.'); i >= 0 {
		op = op[i+1:]
	}
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		_ = req.Body.Close()
		if err != nil {
			return nil, err
		}
		body = b
		req.Body = io.NopCloser(bytes.NewReader(b))
	}
	t.mu.Lock()
	if t.counts == nil {
		t.counts = map[string]int{}
	}
	t.counts[op]++
	t.mu.Unlock()
	action := Pass
	if t.Fault != nil {
		action = t.Fault(op, body)
	}
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	switch action {
	case Throttle:
		return errorResponse(req, http.StatusBadRequest, "ProvisionedThroughputExceededException", "throttled by dbfault"), nil
	case LoseAnswer:
		res, err := base.RoundTrip(req)
		if err != nil {
			return nil, err
		}
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
		return errorResponse(req, http.StatusInternalServerError, "InternalServerError", "answer lost by dbfault"), nil
	default:
		return base.RoundTrip(req)
	}
}

func errorResponse(req *http.Request, status int, code, msg string) *http.Response {
	body := `{"__type":"com.amazonaws.dynamodb.v20120810#` + code + `","message":"` + msg + `"}`
	return &http.Response{
		Status:        http.StatusText(status),
		StatusCode:    status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": []string{"application/x-amz-json-1.0"}},
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}

// Wrap returns a copy of client whose requests go through t, with SDK
// retries kept as they are but their back-off capped at a few
// milliseconds, so that tests do not wait seconds between attempts.
func (t *Transport) Wrap(client *dynamodb.Client) *dynamodb.Client {
	return dynamodb.New(client.Options(), func(o *dynamodb.Options) {
		o.HTTPClient = &http.Client{Transport: t}
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxBackoff = 5 * time.Millisecond
		})
	})
}
