// Command events is the change-events Lambda function: it reads the state
// table's stream and puts one EventBridge event per circuit transition and
// per operator override change (see internal/changeevents).
//
// Environment: CIRCUIT_BREAKER_EVENT_BUS names the bus ("" or "default" for
// the account's default bus).
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/changeevents"
)

func main() {
	logger := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	slog.SetDefault(logger)
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		logger.Error("events function cannot start", slog.String("error", err.Error()))
		os.Exit(1)
	}
	bus := os.Getenv("CIRCUIT_BREAKER_EVENT_BUS")
	if bus == "default" {
		bus = ""
	}
	p := &changeevents.Publisher{Events: eventbridge.NewFromConfig(cfg), Bus: bus, Logger: logger}
	lambda.Start(p.Handle)
}
