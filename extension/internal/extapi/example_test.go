package extapi_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/extapi"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/extapi/extapitest"
)

// A registration the API refuses is a *StatusError: the extension may
// register again for other events, as it does in Lambda Managed
// Instances, which accept SHUTDOWN only.
func ExampleStatusError() {
	api := extapitest.Start()
	defer api.Close()
	api.Refuse(extapi.Invoke, 403, "Extension.InvalidEventType")

	c := extapi.New(api.Addr)
	err := c.Register(context.Background(), "circuit-breaker", extapi.Invoke, extapi.Shutdown)
	var refused *extapi.StatusError
	if errors.As(err, &refused) {
		fmt.Println(refused.StatusCode, refused.ErrorType)
		err = c.Register(context.Background(), "circuit-breaker", extapi.Shutdown)
	}
	fmt.Println(err)
	// Output:
	// 403 Extension.InvalidEventType
	// <nil>
}
