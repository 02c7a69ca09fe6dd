package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/aws/aws-lambda-go/events"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/client"
)

// maxBody bounds the downstream answer passed on to the caller.
const maxBody = 64 << 10

// errTooLarge is a downstream answer over maxBody.
var errTooLarge = fmt.Errorf("downstream answer larger than %d bytes", maxBody)

// statusError is a downstream answer outside 2xx: it counts as a failed
// call, and the answer is still passed on.
type statusError struct{ status int }

func (e *statusError) Error() string { return fmt.Sprintf("downstream answered status %d", e.status) }

type handler struct {
	cfg  config
	cb   *client.Client
	http *http.Client
	log  *slog.Logger
}

// newHandler builds the handler; a nil cb is client.New() (configured from
// the environment).
func newHandler(cfg config, cb *client.Client, log *slog.Logger) *handler {
	if cb == nil {
		cb = client.New()
	}
	return &handler{cfg: cfg, cb: cb, http: &http.Client{}, log: log}
}

// fallbackBody is the local answer when the downstream service is not
// called or fails.
type fallbackBody struct {
	Source  string `json:"source"`
	Service string `json:"service"`
	// Circuit is the circuit's state when the breaker refused the call.
	Circuit string `json:"circuit,omitempty"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// handle never returns an error: every outcome is an HTTP answer.
func (h *handler) handle(ctx context.Context, _ events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error) {
	var out events.APIGatewayProxyResponse
	_ = h.cb.Do(ctx, h.cfg.serviceID,
		func(ctx context.Context) error {
			var err error
			out, err = h.callDownstream(ctx)
			return err
		},
		func(ctx context.Context, err error) error {
			var se *statusError
			if errors.As(err, &se) {
				return nil // the service's own answer, counted as a failure
			}
			out = h.fallback(ctx, err)
			return nil
		})
	return out, nil
}

// callDownstream GETs API_URL within the timeout and returns its answer;
// the error is non-nil for transport errors, timeouts, oversized answers
// and statuses outside 2xx.
func (h *handler) callDownstream(ctx context.Context) (events.APIGatewayProxyResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.cfg.apiURL, nil)
	if err != nil {
		return events.APIGatewayProxyResponse{}, fmt.Errorf("build request: %w", err)
	}
	resp, err := h.http.Do(req)
	if err != nil {
		return events.APIGatewayProxyResponse{}, fmt.Errorf("downstream call: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return events.APIGatewayProxyResponse{}, fmt.Errorf("read downstream answer: %w", err)
	}
	if len(body) > maxBody {
		return events.APIGatewayProxyResponse{}, errTooLarge
	}
	ct := resp.Header.Get("Content-Type")
	if ct == "" {
		ct = "application/json"
	}
	out := events.APIGatewayProxyResponse{StatusCode: resp.StatusCode, Body: string(body), Headers: map[string]string{"Content-Type": ct}}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return out, &statusError{status: resp.StatusCode}
	}
	return out, nil
}

// fallback answers 503 with a body that says why.
func (h *handler) fallback(ctx context.Context, err error) events.APIGatewayProxyResponse {
	b := fallbackBody{Source: "fallback", Service: h.cfg.serviceID}
	var open *client.OpenError
	switch {
	case errors.As(err, &open):
		b.Circuit = open.Circuit.State
		b.Reason = open.Circuit.Reason
		if b.Reason == "" {
			b.Reason = "circuit " + open.Circuit.State
		}
		b.Message = "The downstream service is unavailable; this is a local fallback answer."
	default:
		b.Reason = err.Error()
		b.Message = "The downstream call failed; this is a local fallback answer."
	}
	h.log.InfoContext(ctx, "fallback", "service", h.cfg.serviceID, "circuit", b.Circuit, "reason", b.Reason)
	data, _ := json.Marshal(b)
	return events.APIGatewayProxyResponse{StatusCode: http.StatusServiceUnavailable, Body: string(data), Headers: map[string]string{"Content-Type": "application/json"}}
}
