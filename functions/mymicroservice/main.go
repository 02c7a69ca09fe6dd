// Command mymicroservice is the business-logic function of the example
// app, behind API Gateway. Through the circuit-breaker extension's Go
// client it asks whether it may call the downstream API; when allowed it
// calls API_URL with a timeout and returns the service's answer, and
// otherwise it answers at once with a local fallback. Every call's outcome
// is reported to the extension, which trips the circuit on the fleet's
// failure rate.
//
// Environment: SERVICE_ID (the circuit), API_URL (the downstream URL),
// DOWNSTREAM_TIMEOUT (a Go duration, default 3s, at most 30s), plus the
// extension's variables read by the client.
package main

import (
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	cfg, err := loadConfig(os.Getenv)
	if err != nil {
		log.Error("init failed", "error", err.Error())
		os.Exit(1)
	}
	lambda.Start(newHandler(cfg, nil, log).handle)
}
