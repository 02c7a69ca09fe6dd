package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/client"
)

// A stand-in for the extension, so that the examples' output is
// deterministic.
func fakeExtension() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/circuits/payments" {
			fmt.Fprint(w, `{"id":"payments","state":"OPEN","allowed":false,"version":3,"updatedAt":"2026-01-02T03:04:05Z","stale":false,"ageMs":120}`)
			return
		}
		fmt.Fprint(w, `{"id":"search","state":"CLOSED","allowed":true,"version":0,"updatedAt":null,"stale":false,"ageMs":80}`)
	}))
}

func ExampleClient_Do() {
	ext := fakeExtension()
	defer ext.Close()
	// In a function, client.New() alone reads the port and token from the
	// environment; WithBaseURL points it at the stand-in here.
	cb := client.New(client.WithBaseURL(ext.URL), client.WithTimeout(time.Second))

	err := cb.Do(context.Background(), "payments",
		func(ctx context.Context) error {
			fmt.Println("calling payments")
			return nil
		},
		func(ctx context.Context, err error) error {
			fmt.Println("fallback:", err)
			return nil
		})
	fmt.Println("err:", err)
	// Output:
	// fallback: circuit breaker: circuit is open
	// err: <nil>
}

func ExampleClient_State() {
	ext := fakeExtension()
	defer ext.Close()
	cb := client.New(client.WithBaseURL(ext.URL), client.WithTimeout(time.Second))

	st, err := cb.State(context.Background(), "payments")
	if err != nil {
		fmt.Println("extension unreachable:", err)
		return
	}
	fmt.Println(st.ID, st.State, st.Allowed, st.Version)
	// Output: payments OPEN false 3
}

func ExampleClient_Allow() {
	// Inside a Lambda function with the extension's layer: the port and
	// token come from the environment. Without an answer in time, the
	// failure policy (CIRCUIT_BREAKER_FAIL_MODE, default allow) decides.
	cb := client.New()
	allowed, err := cb.Allow(context.Background(), "search")
	if err != nil {
		fmt.Println("extension did not answer; policy says", allowed)
	}
	if allowed {
		fmt.Println("call search")
	}
}

func ExampleExecute() {
	ext := fakeExtension()
	defer ext.Close()
	cb := client.New(client.WithBaseURL(ext.URL), client.WithTimeout(time.Second))
	errNotFound := errors.New("no such item")

	// The call's value comes back: no variable captured in a closure.
	price, err := client.Execute(context.Background(), cb, "search",
		func(ctx context.Context) (int, error) {
			return 1299, nil // the downstream call, honouring ctx
		},
		func(ctx context.Context, err error) (int, error) {
			return 0, fmt.Errorf("search unavailable: %w", err)
		},
		// A missing item is an answer, not a failure of the service.
		client.IsFailure(func(err error) bool { return !errors.Is(err, errNotFound) }),
		client.WithCallTimeout(2*time.Second))
	fmt.Println(price, err)
	// Output: 1299 <nil>
}
