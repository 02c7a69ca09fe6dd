package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/extapi"
)

// EnvInitType is set by Lambda to the execution environment's
// initialization type: on-demand, provisioned-concurrency, snap-start or
// lambda-managed-instances.
const EnvInitType = "AWS_LAMBDA_INITIALIZATION_TYPE"

// InitManagedInstances is EnvInitType's value in Lambda Managed Instances.
const InitManagedInstances = "lambda-managed-instances"

// managedInstances reports whether the sandbox is one of Lambda Managed
// Instances, where external extensions may register for SHUTDOWN only.
func managedInstances(getenv func(string) string) bool {
	return getenv(EnvInitType) == InitManagedInstances
}

// register registers the extension for the events its execution model
// allows, and reports whether INVOKE events will come:
//
//   - in Lambda Managed Instances (mi), SHUTDOWN only;
//   - elsewhere INVOKE and SHUTDOWN; if the API refuses that (an answer
//     that is not 2xx, whatever the reason), SHUTDOWN only, with a warning,
//     rather than failing the function's init.
//
// Without INVOKE events, the work INVOKE starts runs on a timer instead.
// An error that left no answer (the API unreachable) is returned.
func register(ctx context.Context, ext *extapi.Client, name string, mi bool, log *slog.Logger) (invoke bool, err error) {
	if !mi {
		err := ext.Register(ctx, name, extapi.Invoke, extapi.Shutdown)
		var refused *extapi.StatusError
		if !errors.As(err, &refused) {
			return err == nil, err
		}
		log.Warn("registration for INVOKE refused; registering for SHUTDOWN only, with the INVOKE work on a timer",
			"status", refused.StatusCode, "errorType", refused.ErrorType, "error", err.Error())
	}
	if err := ext.Register(ctx, name, extapi.Shutdown); err != nil {
		return false, fmt.Errorf("register for SHUTDOWN only: %w", err)
	}
	return false, nil
}
