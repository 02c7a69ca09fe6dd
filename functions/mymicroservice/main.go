// Command mymicroservice is the business-logic function of the example
// app. It asks the circuit-breaker extension whether it may call the
// downstream API, calls it with a timeout when allowed, and answers with a
// local fallback otherwise.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
)

const (
	maxBody         = 64 << 10
	downstreamLimit = 3 * time.Second
	askLimit        = 50 * time.Millisecond
)

type handler struct {
	serviceID string
	apiURL    string
	extURL    string
	token     string
	failOpen  bool
	http      *http.Client
	log       *slog.Logger
}

func newHandler() (*handler, error) {
	h := &handler{
		serviceID: os.Getenv("SERVICE_ID"),
		apiURL:    os.Getenv("API_URL"),
		token:     os.Getenv("AWS_SESSION_TOKEN"),
		failOpen:  os.Getenv("CIRCUIT_BREAKER_FAIL_MODE") != "deny",
		http:      &http.Client{},
		log:       slog.New(slog.NewJSONHandler(os.Stdout, nil)),
	}
	port := os.Getenv("CIRCUIT_BREAKER_PORT")
	if port == "" {
		port = "4243"
	}
	h.extURL = "http://127.0.0.1:" + port
	if h.serviceID == "" || h.apiURL == "" {
		return nil, fmt.Errorf("mymicroservice: SERVICE_ID and API_URL must be set")
	}
	return h, nil
}

// allowed asks the extension; when it cannot answer, the fail mode decides.
func (h *handler) allowed(ctx context.Context) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, askLimit)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.extURL+"/circuits/"+h.serviceID, nil)
	if err != nil {
		return h.failOpen, "unknown"
	}
	req.Header.Set("X-Circuit-Breaker-Token", h.token)
	resp, err := h.http.Do(req)
	if err != nil {
		h.log.WarnContext(ctx, "extension unreachable", "error", err.Error())
		return h.failOpen, "unknown"
	}
	defer resp.Body.Close()
	var answer struct {
		State   string `json:"state"`
		Allowed bool   `json:"allowed"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(&answer) != nil {
		return h.failOpen, "unknown"
	}
	return answer.Allowed, answer.State
}

func (h *handler) handle(ctx context.Context, _ events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error) {
	ok, state := h.allowed(ctx)
	if !ok {
		return jsonResponse(http.StatusServiceUnavailable, map[string]string{
			"message": "The downstream service is unavailable; this is a local fallback answer.",
			"circuit": state,
			"source":  "fallback",
		}), nil
	}
	callCtx, cancel := context.WithTimeout(ctx, downstreamLimit)
	defer cancel()
	req, err := http.NewRequestWithContext(callCtx, http.MethodGet, h.apiURL, nil)
	if err != nil {
		return events.APIGatewayProxyResponse{}, fmt.Errorf("mymicroservice: build request: %w", err)
	}
	resp, err := h.http.Do(req)
	if err != nil {
		return jsonResponse(http.StatusBadGateway, map[string]string{"message": "The downstream call failed: " + err.Error(), "source": "fallback"}), nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	return events.APIGatewayProxyResponse{StatusCode: resp.StatusCode, Body: string(body), Headers: map[string]string{"Content-Type": "application/json"}}, nil
}

func jsonResponse(status int, body any) events.APIGatewayProxyResponse {
	data, _ := json.Marshal(body)
	return events.APIGatewayProxyResponse{StatusCode: status, Body: string(data), Headers: map[string]string{"Content-Type": "application/json"}}
}

func main() {
	h, err := newHandler()
	if err != nil {
		slog.Error("init failed", "error", err.Error())
		os.Exit(1)
	}
	lambda.Start(h.handle)
}
