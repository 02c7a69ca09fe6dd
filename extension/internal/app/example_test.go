package app_test

import (
	"errors"
	"fmt"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/app"
)

// EnvCredentials finds the credentials Lambda gives the function without
// a network call: here a SnapStart sandbox's container endpoint. The
// endpoint is called on the first table call.
func ExampleEnvCredentials() {
	env := map[string]string{
		"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:9001/2021-04-23/credentials",
		"AWS_CONTAINER_AUTHORIZATION_TOKEN":  "token-of-the-sandbox",
	}
	_, source, err := app.EnvCredentials(func(k string) string { return env[k] })
	fmt.Println(source, err)

	_, _, err = app.EnvCredentials(func(string) string { return "" })
	fmt.Println(errors.Is(err, app.ErrNoCredentials))
	// Output:
	// container endpoint <nil>
	// true
}
