// Command circuitctl shows and overrides circuits in the state table, for
// operators: force a circuit OPEN during a known-bad deploy downstream, or
// CLOSED after a false alarm, with a reason and an optional expiry.
//
//	circuitctl [flags] status [ID...]
//	circuitctl [flags] open  ID --reason TEXT [--for DURATION] [--create]
//	circuitctl [flags] close ID --reason TEXT [--for DURATION] [--create]
//	circuitctl [flags] clear ID
//
// Flags: --table (default $CIRCUIT_BREAKER_TABLE), --endpoint (a local
// DynamoDB such as the local stack's dynalite; default
// $AWS_ENDPOINT_URL_DYNAMODB), --config (the services listed by status
// when no ID is given; default infra/services.json), --create (open or
// close a circuit the table does not hold yet; without it such an ID is
// refused, since it is most likely a typo).
//
// Overrides are written to the circuit's own override item
// "<id>#override", which the functions attached to the breaker cannot
// write. Text read from the table is printed with control characters
// escaped.
//
// IAM: on the state table, dynamodb:BatchGetItem (status, and the check
// before open and close) and dynamodb:UpdateItem (open, close, clear, and
// moving an override written by earlier versions to its own item), for
// the keys "<id>" and "<id>#override". The construct's
// GrantOperate(grantee) grants these (plus GetItem), limited to the
// monitored services' keys.
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
