// Package extapi is a client for the AWS Lambda Extensions API: it
// registers an external extension, waits for lifecycle events and reports
// init and exit errors.
//
// See https://docs.aws.amazon.com/lambda/latest/dg/runtimes-extensions-api.html.
package extapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// The Extensions API version prefix.
const basePath = "/2020-01-01/extension"

// Header names used by the Extensions API.
const (
	HeaderName       = "Lambda-Extension-Name"
	HeaderIdentifier = "Lambda-Extension-Identifier"
	HeaderErrorType  = "Lambda-Extension-Function-Error-Type"
)

// EventType is the type of a lifecycle event.
type EventType string

// The lifecycle events an external extension can register for.
const (
	Invoke   EventType = "INVOKE"
	Shutdown EventType = "SHUTDOWN"
)

// Shutdown reasons (Event.ShutdownReason).
const (
	// ReasonSpindown: the platform retires an idle sandbox.
	ReasonSpindown = "spindown"
	// ReasonTimeout: an invocation ran past the function's timeout.
	ReasonTimeout = "timeout"
	// ReasonFailure: the runtime or an extension failed.
	ReasonFailure = "failure"
)

// Event is a lifecycle event returned by Next.
type Event struct {
	// EventType is INVOKE or SHUTDOWN.
	EventType EventType `json:"eventType"`
	// DeadlineMs is the event's deadline in Unix milliseconds: the end of
	// the invocation for INVOKE, the time the process is killed for
	// SHUTDOWN.
	DeadlineMs int64 `json:"deadlineMs"`
	// RequestID is the invocation's request ID (INVOKE only).
	RequestID string `json:"requestId,omitempty"`
	// InvokedFunctionArn is the ARN of the invoked function (INVOKE only).
	InvokedFunctionArn string `json:"invokedFunctionArn,omitempty"`
	// ShutdownReason says why the sandbox shuts down (SHUTDOWN only):
	// spindown, timeout or failure.
	ShutdownReason string `json:"shutdownReason,omitempty"`
}

// Deadline returns DeadlineMs as a time, or the zero time when unset.
func (e Event) Deadline() time.Time {
	if e.DeadlineMs <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(e.DeadlineMs)
}

// Client talks to the Extensions API at one address. Create it with New and
// call Register before anything else.
type Client struct {
	base string
	http *http.Client
	id   string
}

// New returns a client for the API at runtimeAPI, the host:port found in
// the AWS_LAMBDA_RUNTIME_API environment variable.
func New(runtimeAPI string) *Client {
	return &Client{
		base: "http://" + runtimeAPI + basePath,
		// No client timeout: event/next blocks until the next event,
		// which may be hours away. Calls are bounded by their context.
		http: &http.Client{Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 2,
		}},
	}
}

// Identifier returns the extension identifier received at registration.
func (c *Client) Identifier() string { return c.id }

// Register registers the extension under name for the given events. The
// name must equal the extension's file name under /opt/extensions. An
// error that wraps *StatusError is a refusal; the extension may register
// again, for other events.
func (c *Client) Register(ctx context.Context, name string, events ...EventType) error {
	body, err := json.Marshal(struct {
		Events []EventType `json:"events"`
	}{events})
	if err != nil {
		return fmt.Errorf("extapi: register: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/register", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("extapi: register: %w", err)
	}
	req.Header.Set(HeaderName, name)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.do(req)
	if err != nil {
		return fmt.Errorf("extapi: register %q: %w", name, err)
	}
	id := resp.Header.Get(HeaderIdentifier)
	if id == "" {
		return fmt.Errorf("extapi: register %q: response has no %s header", name, HeaderIdentifier)
	}
	c.id = id
	return nil
}

// Next blocks until the next lifecycle event and returns it.
func (c *Client) Next(ctx context.Context) (Event, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/event/next", nil)
	if err != nil {
		return Event{}, fmt.Errorf("extapi: next: %w", err)
	}
	req.Header.Set(HeaderIdentifier, c.id)
	resp, err := c.doRaw(req)
	if err != nil {
		return Event{}, fmt.Errorf("extapi: next: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Event{}, fmt.Errorf("extapi: next: %w", statusError(resp))
	}
	var ev Event
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&ev); err != nil {
		return Event{}, fmt.Errorf("extapi: next: decode event: %w", err)
	}
	return ev, nil
}

// InitError reports a failed initialisation. errorType is a category such
// as "Extension.ConfigInvalid". Lambda then fails the init phase; the
// extension should exit non-zero afterwards.
func (c *Client) InitError(ctx context.Context, errorType string, cause error) error {
	return c.reportError(ctx, "/init/error", errorType, cause)
}

// ExitError reports an error that makes the extension exit.
func (c *Client) ExitError(ctx context.Context, errorType string, cause error) error {
	return c.reportError(ctx, "/exit/error", errorType, cause)
}

func (c *Client) reportError(ctx context.Context, path, errorType string, cause error) error {
	body, err := json.Marshal(struct {
		ErrorMessage string   `json:"errorMessage"`
		ErrorType    string   `json:"errorType"`
		StackTrace   []string `json:"stackTrace"`
	}{cause.Error(), errorType, []string{}})
	if err != nil {
		return fmt.Errorf("extapi: %s: %w", path, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("extapi: %s: %w", path, err)
	}
	req.Header.Set(HeaderIdentifier, c.id)
	req.Header.Set(HeaderErrorType, errorType)
	req.Header.Set("Content-Type", "application/json")
	if _, err := c.do(req); err != nil {
		return fmt.Errorf("extapi: report %s: %w", path, err)
	}
	return nil
}

// do sends req, drains and closes the body and fails on a non-2xx status.
func (c *Client) do(req *http.Request) (*http.Response, error) {
	resp, err := c.doRaw(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return nil, statusError(resp)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	return resp, nil
}

func (c *Client) doRaw(req *http.Request) (*http.Response, error) {
	return c.http.Do(req)
}

// StatusError is an answer of the Extensions API whose status is not 2xx:
// the API refused the call, as opposed to an error that left no answer.
// Lambda Managed Instances, for example, refuse an external extension's
// registration for INVOKE with 403 and Extension.InvalidEventType.
type StatusError struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// ErrorType is the body's errorType, such as
	// "Extension.InvalidEventType", when the body is a JSON error.
	ErrorType string
	// Body is the start of the body (at most 4 KiB), trimmed.
	Body string
}

// Error implements error.
func (e *StatusError) Error() string {
	return fmt.Sprintf("status %d: %s", e.StatusCode, e.Body)
}

func statusError(resp *http.Response) error {
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	e := &StatusError{StatusCode: resp.StatusCode, Body: string(bytes.TrimSpace(msg))}
	var body struct {
		ErrorType string `json:"errorType"`
	}
	if json.Unmarshal(msg, &body) == nil {
		e.ErrorType = body.ErrorType
	}
	return e
}
