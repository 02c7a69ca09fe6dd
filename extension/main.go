// Command circuit-breaker is the circuit-breaker Lambda extension: an
// external extension that serves the state of circuits to the function on
// 127.0.0.1 (see docs/extension.md).
//
// The layer places it at /opt/extensions/circuit-breaker; it registers
// under its file name.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/app"
)

func main() {
	// The heap is small and short-lived (one request's buffers): collect
	// more often than Go's default to keep resident memory low in
	// sandboxes with 128 MB, unless GOGC is set explicitly.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := app.Run(ctx, app.Options{Name: app.NameFromArgs(os.Args)})
	stop()
	os.Exit(code)
}
