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
// call, and the answer it carries is still passed on.
type statusError struct {
	resp events.APIGatewayProxyResponse
}

func (e *statusError) Error() string {
	return fmt.Sprintf("downstream answered status %d", e.resp.StatusCode)
}

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

// handle never returns an error: every outcome is an HTTP answer. The
// downstream call is bounded by the configured timeout, and a call cut off
// by it counts as a failed call.
func (h *handler) handle(ctx context.Context, _ events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error) {
	out, _ := client.Execute(ctx, h.cb, h.cfg.serviceID, h.callDownstream,
		func(ctx context.Context, err error) (events.APIGatewayProxyResponse, error) {
			var se *statusError
			if errors.As(err, &se) {
				return se.resp, nil // the service's own answer, counted as a failure
			}
			return h.fallback(ctx, err), nil
		},
		client.WithCallTimeout(h.cfg.timeout))
	return out, nil
}

// callDownstream GETs API_URL and returns its answer; the error is non-nil
// for transport errors, timeouts (ctx), oversized answers and statuses
// outside 2xx.
func (h *handler) callDownstream(ctx context.Context) (events.APIGatewayProxyResponse, error) {
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
		return out, &statusError{resp: out}
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
