// Command circuit-breaker is the circuit-breaker Lambda extension: an
// external extension that serves the state of circuits to the function on
// 127.0.0.1 (see the README's "Extension API" section).
//
// The layer places it at /opt/extensions/circuit-breaker; it registers
// under its file name.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := app.Run(ctx, app.Options{Name: app.NameFromArgs(os.Args)})
	stop()
	os.Exit(code)
}
