// Package client asks the circuit-breaker extension, over loopback, whether
// a function may call a service.
//
// A Client reads the extension's port (CIRCUIT_BREAKER_PORT), the token
// (api.Token: AWS_SESSION_TOKEN, else AWS_CONTAINER_AUTHORIZATION_TOKEN)
// and the failure policy (CIRCUIT_BREAKER_FAIL_MODE) from the environment
// the function shares with the extension. Each request has a short timeout
// (DefaultTimeout); when the extension cannot answer in time, Allow, Do
// and Execute follow the failure policy: allow (the default) or deny. A
// refused token or an absent extension is logged at warn level, at most
// once per WarnInterval. CIRCUIT_BREAKER_DISABLED=true turns the client
// off: every call is allowed without asking, and nothing is reported.
//
// Do and Execute also report the outcome of each call they make (success
// or failure and latency) to the extension, which counts them across the
// fleet to trip the circuit, and which hands out the fleet's few HALF_OPEN
// probe calls.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/api"
)

// DefaultTimeout bounds one request to the extension. A cache hit takes
// well under a millisecond; the extension takes longer only when it must
// read or write the table first: the first lookup of a circuit that was not
// listed in CIRCUIT_BREAKER_SERVICES (at most its miss timeout,
// CIRCUIT_BREAKER_MISS_TIMEOUT, 100 ms by default), or a lookup that ends
// a cool-down and claims a HALF_OPEN probe lease (at most one more miss
// timeout). The timeout covers both, so that the answer, not the failure
// policy, decides; New raises it to twice the miss timeout plus 50 ms when
// CIRCUIT_BREAKER_MISS_TIMEOUT is set higher. Should a caller still give
// up, the extension takes back a probe lease it had handed to it.
const DefaultTimeout = 250 * time.Millisecond

// ProbeReportTimeout bounds the report of a probe call's outcome, which the
// extension applies to the circuit in the table before it answers.
const ProbeReportTimeout = 1500 * time.Millisecond

// ErrOpen is passed to the fallback of Do when the circuit denies the call;
// the error is an *OpenError, which matches ErrOpen with errors.Is.
var ErrOpen = errors.New("circuit breaker: circuit is open")

// OpenError is the error Do passes to the fallback when the circuit denies
// the call. It carries the extension's answer (Circuit.State,
// Circuit.Reason); when the extension did not answer and the failure
// policy denied, Circuit.FailMode is true.
type OpenError struct {
	Circuit Circuit
}

// Error returns ErrOpen's message.
func (e *OpenError) Error() string { return ErrOpen.Error() }

// Is makes errors.Is(err, ErrOpen) hold.
func (e *OpenError) Is(target error) bool { return target == ErrOpen }

// Circuit is the extension's answer for one circuit.
type Circuit = api.Circuit

// Client is safe for concurrent use. Create it once, outside the handler.
type Client struct {
	base      string
	token     string
	timeout   time.Duration
	failAllow bool
	disabled  bool
	http      *http.Client
	log       *slog.Logger
}

// Option configures a Client.
type Option func(*Client)

// WithTimeout sets the per-request timeout (default DefaultTimeout).
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// WithBaseURL sets the extension's address, such as
// "http://127.0.0.1:4243" (default: 127.0.0.1 and CIRCUIT_BREAKER_PORT).
func WithBaseURL(u string) Option { return func(c *Client) { c.base = strings.TrimRight(u, "/") } }

// WithToken sets the token (default: api.Token(os.Getenv), the extension's
// rule: AWS_SESSION_TOKEN, else AWS_CONTAINER_AUTHORIZATION_TOKEN).
func WithToken(token string) Option { return func(c *Client) { c.token = token } }

// WithFailMode sets the failure policy, "allow" or "deny" (default:
// CIRCUIT_BREAKER_FAIL_MODE, else allow). An invalid value denies.
func WithFailMode(mode string) Option {
	return func(c *Client) { c.failAllow = failModeAllows(mode) }
}

// failModeAllows is true for "allow" (any case) and the empty default,
// false for "deny" and for any invalid value, as the extension reads
// CIRCUIT_BREAKER_FAIL_MODE.
func failModeAllows(mode string) bool {
	switch strings.ToLower(strings.TrimSpace(mode)) {
	case "", "allow":
		return true
	}
	return false
}

// WithLogger sets the logger of the client's warnings (default:
// slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(c *Client) { c.log = l } }

// WithHTTPClient replaces the HTTP client (default: a client with its own
// keep-alive transport and no proxy).
func WithHTTPClient(h *http.Client) Option { return func(c *Client) { c.http = h } }

// New returns a client configured from the environment and opts.
func New(opts ...Option) *Client {
	port := api.DefaultPort
	if p, err := strconv.Atoi(os.Getenv(api.EnvPort)); err == nil && p > 0 && p < 65536 {
		port = p
	}
	timeout := DefaultTimeout
	if miss, err := time.ParseDuration(os.Getenv(api.EnvMissTimeout)); err == nil && 2*miss+50*time.Millisecond > timeout {
		timeout = 2*miss + 50*time.Millisecond
	}
	c := &Client{
		base:      "http://127.0.0.1:" + strconv.Itoa(port),
		token:     api.Token(os.Getenv),
		timeout:   timeout,
		failAllow: failModeAllows(os.Getenv(api.EnvFailMode)),
		disabled:  disabledFromEnv(),
		log:       slog.Default(),
		http: &http.Client{Transport: &http.Transport{
			Proxy:               nil, // loopback: never through HTTP_PROXY
			DialContext:         (&net.Dialer{Timeout: time.Second}).DialContext,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     5 * time.Minute,
		}},
	}
	for _, o := range opts {
		o(c)
	}
	if c.disabled {
		logDisabled(c.log)
	}
	return c
}

// Error is an error answer of the extension.
type Error struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// Message is the extension's message.
	Message string
}

// Error returns the status and the extension's message.
func (e *Error) Error() string {
	return fmt.Sprintf("circuit breaker extension: %d %s", e.StatusCode, e.Message)
}

// State asks the extension for the circuit id. It returns an error when the
// extension cannot be reached in time or refuses the request; it does not
// apply the failure policy. When the circuit is HALF_OPEN, the answer may
// make the caller one of the fleet's probes (Circuit.Probe): then make the
// call and report its outcome with Report and Circuit.ProbeToken.
func (c *Client) State(ctx context.Context, id string) (Circuit, error) {
	if c.disabled {
		return disabledCircuit(id), nil
	}
	var out Circuit
	err := c.get(ctx, "/circuits/"+url.PathEscape(id), &out)
	return out, err
}

// States asks for several circuits at once, in the order of ids.
func (c *Client) States(ctx context.Context, ids ...string) ([]Circuit, error) {
	if c.disabled {
		out := make([]Circuit, len(ids))
		for i, id := range ids {
			out[i] = disabledCircuit(id)
		}
		return out, nil
	}
	var out api.Circuits
	err := c.get(ctx, "/circuits?ids="+url.QueryEscape(strings.Join(ids, ",")), &out)
	return out.Circuits, err
}

// Allow reports whether the function may call the service id now. When
// the extension cannot answer, the failure policy decides and err says
// why; allowed is meaningful either way. Allow never takes one of the
// fleet's HALF_OPEN probe calls, since it could not report the probe's
// outcome: a HALF_OPEN circuit answers false here. Use Do, or State and
// Report with the answer's ProbeToken, to take part in probing.
func (c *Client) Allow(ctx context.Context, id string) (allowed bool, err error) {
	sts, err := c.States(ctx, id)
	if err == nil && len(sts) != 1 {
		err = fmt.Errorf("circuit breaker extension: %d answers for one circuit", len(sts))
	}
	if err != nil {
		return c.failAllow, err
	}
	return sts[0].Allowed, nil
}

// Do asks whether the service id may be called and runs call if so;
// otherwise it runs fallback with an *OpenError (errors.Is ErrOpen). When
// call fails, fallback runs with call's error. A nil fallback returns the
// error instead. When the extension cannot answer, the failure policy
// decides. Execute does the same for a call that returns a value; see it
// for what counts as a failure and for opts.
//
// After call returns, Do reports its outcome to the extension: success
// when call returned nil, and its latency. An ordinary report is one
// loopback request that the extension answers from memory (well under a
// millisecond). When the call was the fleet's HALF_OPEN probe
// (Circuit.Probe), Do waits for the extension to apply the outcome to the
// circuit, at most ProbeReportTimeout. Reports are best effort: a failed
// report never changes what Do returns.
func (c *Client) Do(ctx context.Context, id string, call func(ctx context.Context) error, fallback func(ctx context.Context, err error) error, opts ...CallOption) error {
	var fb func(context.Context, error) (struct{}, error)
	if fallback != nil {
		fb = func(ctx context.Context, err error) (struct{}, error) { return struct{}{}, fallback(ctx, err) }
	}
	_, err := Execute(ctx, c, id, func(ctx context.Context) (struct{}, error) { return struct{}{}, call(ctx) }, fb, opts...)
	return err
}

// Report tells the extension the outcome of one call to service id: its
// success and latency, and the probe token if the call was a probe
// (Circuit.ProbeToken; empty otherwise). It is not cancelled with ctx, so
// that the outcome of a call cut short by ctx is still counted.
func (c *Client) Report(ctx context.Context, id string, success bool, latency time.Duration, probeToken string) (api.Accepted, error) {
	if c.disabled {
		return api.Accepted{}, nil
	}
	body, err := json.Marshal(api.Outcome{Success: &success, LatencyMs: latency.Milliseconds(), ProbeToken: probeToken})
	if err != nil {
		return api.Accepted{}, fmt.Errorf("circuit breaker extension: %w", err)
	}
	timeout := c.timeout
	if probeToken != "" {
		timeout = max(timeout, ProbeReportTimeout)
	}
	var out api.Accepted
	err = c.send(context.WithoutCancel(ctx), http.MethodPost, "/circuits/"+url.PathEscape(id)+"/outcomes", body, timeout, http.StatusAccepted, &out)
	return out, err
}

// disabledCircuit is the answer while the kill switch is on.
func disabledCircuit(id string) Circuit {
	return Circuit{ID: id, State: "CLOSED", Allowed: true, AgeMs: -1, Reason: "circuit breaker disabled (" + EnvDisabled + "=true)"}
}

// Health checks that the extension answers.
func (c *Client) Health(ctx context.Context) error {
	var out api.Health
	return c.get(ctx, "/health", &out)
}

func (c *Client) get(ctx context.Context, path string, out any) error {
	return c.send(ctx, http.MethodGet, path, nil, c.timeout, http.StatusOK, out)
}

func (c *Client) send(ctx context.Context, method, path string, body []byte, timeout time.Duration, want int, out any) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return fmt.Errorf("circuit breaker extension: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set(api.HeaderToken, c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.warnMisconfigured(err)
		return fmt.Errorf("circuit breaker extension: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("circuit breaker extension: read answer: %w", err)
	}
	if resp.StatusCode != want {
		var e api.Error
		_ = json.Unmarshal(data, &e)
		err := &Error{StatusCode: resp.StatusCode, Message: e.Message}
		c.warnMisconfigured(err)
		return err
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("circuit breaker extension: decode answer: %w", err)
	}
	return nil
}
