// Package client asks the circuit-breaker extension, over loopback, whether
// a function may call a service.
//
// A Client reads the extension's port (CIRCUIT_BREAKER_PORT), the session
// token (AWS_SESSION_TOKEN) and the failure policy
// (CIRCUIT_BREAKER_FAIL_MODE) from the environment the function shares
// with the extension. Each request has a timeout of a few milliseconds;
// when the extension cannot answer in time, Allow and Do follow the
// failure policy: allow (the default) or deny.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/api"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/config"
)

// DefaultTimeout bounds one request to the extension. A cache hit takes
// well under a millisecond; the first lookup of a circuit that was not
// listed in CIRCUIT_BREAKER_SERVICES may take longer (the extension reads
// the table) and then falls back to the failure policy.
const DefaultTimeout = 5 * time.Millisecond

// ErrOpen is passed to the fallback of Do when the circuit denies the call.
var ErrOpen = errors.New("circuit breaker: circuit is open")

// Circuit is the extension's answer for one circuit.
type Circuit = api.Circuit

// Client is safe for concurrent use. Create it once, outside the handler.
type Client struct {
	base      string
	token     string
	timeout   time.Duration
	failAllow bool
	http      *http.Client
}

// Option configures a Client.
type Option func(*Client)

// WithTimeout sets the per-request timeout (default DefaultTimeout).
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// WithBaseURL sets the extension's address, such as
// "http://127.0.0.1:4243" (default: 127.0.0.1 and CIRCUIT_BREAKER_PORT).
func WithBaseURL(u string) Option { return func(c *Client) { c.base = strings.TrimRight(u, "/") } }

// WithToken sets the session token (default: AWS_SESSION_TOKEN).
func WithToken(token string) Option { return func(c *Client) { c.token = token } }

// WithFailMode sets the failure policy, "allow" or "deny" (default:
// CIRCUIT_BREAKER_FAIL_MODE, else allow). An invalid value denies.
func WithFailMode(mode string) Option {
	return func(c *Client) {
		m, err := config.ParseFailMode(mode)
		c.failAllow = err == nil && m.Allows()
	}
}

// WithHTTPClient replaces the HTTP client (default: a client with its own
// keep-alive transport and no proxy).
func WithHTTPClient(h *http.Client) Option { return func(c *Client) { c.http = h } }

// New returns a client configured from the environment and opts.
func New(opts ...Option) *Client {
	port := api.DefaultPort
	if p, err := strconv.Atoi(os.Getenv(config.EnvPort)); err == nil && p > 0 && p < 65536 {
		port = p
	}
	mode, err := config.ParseFailMode(os.Getenv(config.EnvFailMode))
	c := &Client{
		base:      "http://127.0.0.1:" + strconv.Itoa(port),
		token:     os.Getenv(config.EnvToken),
		timeout:   DefaultTimeout,
		failAllow: err == nil && mode.Allows(),
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
	return c
}

// Error is an error answer of the extension.
type Error struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// Message is the extension's message.
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("circuit breaker extension: %d %s", e.StatusCode, e.Message)
}

// State asks the extension for the circuit id. It returns an error when the
// extension cannot be reached in time or refuses the request; it does not
// apply the failure policy.
func (c *Client) State(ctx context.Context, id string) (Circuit, error) {
	var out Circuit
	err := c.get(ctx, "/circuits/"+url.PathEscape(id), &out)
	return out, err
}

// States asks for several circuits at once, in the order of ids.
func (c *Client) States(ctx context.Context, ids ...string) ([]Circuit, error) {
	var out api.Circuits
	err := c.get(ctx, "/circuits?ids="+url.QueryEscape(strings.Join(ids, ",")), &out)
	return out.Circuits, err
}

// Allow reports whether the function may call the service id now. When
// the extension cannot answer, the failure policy decides and err says
// why; allowed is meaningful either way.
func (c *Client) Allow(ctx context.Context, id string) (allowed bool, err error) {
	st, err := c.State(ctx, id)
	if err != nil {
		return c.failAllow, err
	}
	return st.Allowed, nil
}

// Do asks whether the service id may be called and runs call if so;
// otherwise it runs fallback with ErrOpen. When call fails, fallback runs
// with call's error. A nil fallback returns the error instead. When the
// extension cannot answer, the failure policy decides.
func (c *Client) Do(ctx context.Context, id string, call func(ctx context.Context) error, fallback func(ctx context.Context, err error) error) error {
	allowed, _ := c.Allow(ctx, id)
	if !allowed {
		return runFallback(ctx, fallback, ErrOpen)
	}
	err := call(ctx)
	// Seam: outcome reporting (success or failure of call) is added here
	// once the extension has an outcome API.
	if err != nil {
		return runFallback(ctx, fallback, err)
	}
	return nil
}

func runFallback(ctx context.Context, fallback func(context.Context, error) error, err error) error {
	if fallback == nil {
		return err
	}
	return fallback(ctx, err)
}

// Health checks that the extension answers.
func (c *Client) Health(ctx context.Context) error {
	var out api.Health
	return c.get(ctx, "/health", &out)
}

func (c *Client) get(ctx context.Context, path string, out any) error {
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return fmt.Errorf("circuit breaker extension: %w", err)
	}
	if c.token != "" {
		req.Header.Set(api.HeaderToken, c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("circuit breaker extension: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("circuit breaker extension: read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e api.Error
		_ = json.Unmarshal(body, &e)
		return &Error{StatusCode: resp.StatusCode, Message: e.Message}
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("circuit breaker extension: decode answer: %w", err)
	}
	return nil
}
