// Command circuitctl shows and overrides circuits in the state table, for
// operators: force a circuit OPEN during a known-bad deploy downstream, or
// CLOSED after a false alarm, with a reason and an optional expiry.
//
//	circuitctl [flags] status [ID...]
//	circuitctl [flags] open  ID --reason TEXT [--for DURATION]
//	circuitctl [flags] close ID --reason TEXT [--for DURATION]
//	circuitctl [flags] clear ID
//
// Flags: --table (default $CIRCUIT_BREAKER_TABLE), --endpoint (a local
// DynamoDB such as the local stack's dynalite; default
// $AWS_ENDPOINT_URL_DYNAMODB), --config (the services listed by status
// when no ID is given; default infra/services.json).
package main

import (
	"context"
	"os"
	"time"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv, nil))
}
