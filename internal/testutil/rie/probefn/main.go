// Command probefn is a Lambda function for end-to-end tests: it asks the
// circuit-breaker extension about the circuits named in the event, with
// the Go client and with raw HTTP, and returns what it heard.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/client"
)

// Event is the function's input.
type Event struct {
	// IDs are the circuits to ask about.
	IDs []string `json:"ids"`
	// Before, when set, is a URL the function GETs before asking, so
	// that a test can act in the middle of an invocation (for example,
	// kill the extension).
	Before string `json:"before,omitempty"`
	// Tag is echoed in the result, to tell invocations apart in the logs.
	Tag string `json:"tag,omitempty"`
	// AllowTimeoutMs is the Go client's timeout for the Allow question,
	// in milliseconds; 0 means 2000.
	AllowTimeoutMs int `json:"allowTimeoutMs,omitempty"`
	// Failures and Successes, after the questions, report that many
	// failed and successful calls for each circuit they name, one report
	// each.
	Failures  map[string]int `json:"failures,omitempty"`
	Successes map[string]int `json:"successes,omitempty"`
}

// Answer is one circuit's answer, or the client's error.
type Answer struct {
	Circuit client.Circuit `json:"circuit"`
	Allowed bool           `json:"allowed"`
	Error   string         `json:"error,omitempty"`
	// Allow is client.Allow's answer: the failure policy decides when
	// the extension cannot answer.
	Allow bool `json:"allow"`
	// AllowError is client.Allow's error, if any.
	AllowError string `json:"allowError,omitempty"`
	// AllowMs is how long client.Allow took, in milliseconds.
	AllowMs float64 `json:"allowMs"`
}

// Result is the function's output.
type Result struct {
	// Answers are in the order of Event.IDs.
	Answers []Answer `json:"answers"`
	// NoTokenStatus is the status of a request without the token.
	NoTokenStatus int `json:"noTokenStatus"`
	// ForwardedStatus is the status of a request with X-Forwarded-For.
	ForwardedStatus int `json:"forwardedStatus"`
	// Tag is Event.Tag.
	Tag string `json:"tag,omitempty"`
	// BeforeStatus is the status of the GET of Event.Before.
	BeforeStatus int `json:"beforeStatus,omitempty"`
	// Reported is how many of the outcomes of Event.Failures and
	// Event.Successes the extension accepted, and ReportErrors the errors
	// of the others.
	Reported     int      `json:"reported,omitempty"`
	ReportErrors []string `json:"reportErrors,omitempty"`
}

func main() {
	// A generous timeout: the test checks answers, not latency.
	cb := client.New(client.WithTimeout(2 * time.Second))
	port := os.Getenv("CIRCUIT_BREAKER_PORT")
	if port == "" {
		port = "4243"
	}
	base := "http://127.0.0.1:" + port
	lambda.Start(func(ctx context.Context, ev Event) (Result, error) {
		res := Result{Tag: ev.Tag}
		if ev.Before != "" {
			res.BeforeStatus = status(ctx, ev.Before, nil)
		}
		allowTimeout := 2 * time.Second
		if ev.AllowTimeoutMs > 0 {
			allowTimeout = time.Duration(ev.AllowTimeoutMs) * time.Millisecond
		}
		allower := client.New(client.WithTimeout(allowTimeout))
		for _, id := range ev.IDs {
			st, err := cb.State(ctx, id)
			a := Answer{Circuit: st, Allowed: st.Allowed}
			if err != nil {
				a.Error = err.Error()
			}
			start := time.Now()
			a.Allow, err = allower.Allow(ctx, id)
			a.AllowMs = float64(time.Since(start).Microseconds()) / 1000
			if err != nil {
				a.AllowError = err.Error()
			}
			res.Answers = append(res.Answers, a)
		}
		for success, counts := range map[bool]map[string]int{false: ev.Failures, true: ev.Successes} {
			for id, n := range counts {
				for range n {
					acc, err := cb.Report(ctx, id, success, 5*time.Millisecond, "")
					if err != nil {
						res.ReportErrors = append(res.ReportErrors, err.Error())
						continue
					}
					res.Reported += acc.Accepted
				}
			}
		}
		res.NoTokenStatus = status(ctx, base+"/circuits/x", nil)
		res.ForwardedStatus = status(ctx, base+"/health", map[string]string{"X-Forwarded-For": "203.0.113.9"})
		// Also on stdout: the platform may replace the response (for
		// example with Extension.Crash).
		if line, err := json.Marshal(map[string]any{"msg": "probe result", "result": res}); err == nil {
			fmt.Println(string(line))
		}
		return res, nil
	})
}

func status(ctx context.Context, url string, header map[string]string) int {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
