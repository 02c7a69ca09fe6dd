// Command updater is the updater Lambda function: on every EventBridge
// schedule it checks one monitored service and applies the result to the
// service's circuit in the state table. The logic lives in
// internal/updater; this file only wires it to the Lambda runtime.
//
// Environment: CIRCUIT_BREAKER_TABLE names the state table (required).
// CIRCUIT_BREAKER_ALLOW_LOCAL_TARGETS=true lets checks connect to
// loopback, link-local and metadata addresses (refused by default). The
// AWS SDK's usual variables apply, including AWS_ENDPOINT_URL_DYNAMODB for
// a local DynamoDB.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/healthcheck"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/metrics"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/updater"
)

// TableEnv is the environment variable that names the state table.
const TableEnv = "CIRCUIT_BREAKER_TABLE"

func main() {
	logger := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	slog.SetDefault(logger)
	u, err := setup(context.Background(), os.Getenv, logger, os.Stdout)
	if err != nil {
		logger.Error("updater cannot start", slog.String("error", err.Error()))
		os.Exit(1)
	}
	lambda.Start(u.Handle)
}

// setup builds the updater from the environment.
func setup(ctx context.Context, getenv func(string) string, logger *slog.Logger, stdout io.Writer) (*updater.Updater, error) {
	table := getenv(TableEnv)
	if table == "" {
		return nil, errors.New("updater: " + TableEnv + " is not set")
	}
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("updater: load AWS configuration: %w", err)
	}
	db := dynamodb.NewFromConfig(cfg)
	u := updater.New(store.New(db, table).WithLogger(logger), logger)
	switch v := getenv(updater.EnvAllowLocalTargets); v {
	case "", "false":
	case "true":
		u.Prober = healthcheck.NewChecker(nil, healthcheck.AllowLocalTargets())
	default:
		return nil, fmt.Errorf("updater: %s=%q: want true or false", updater.EnvAllowLocalTargets, v)
	}
	u.Metrics = metrics.NewWriter(stdout, table)
	return u, nil
}
