package extapi_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/extapi"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/extapi/extapitest"
)

func TestRegisterNextAndErrors(t *testing.T) {
	fake := extapitest.Start()
	defer fake.Close()
	ctx := context.Background()
	c := extapi.New(fake.Addr)
	if err := c.Register(ctx, "circuit-breaker", extapi.Invoke, extapi.Shutdown); err != nil {
		t.Fatal(err)
	}
	if c.Identifier() != extapitest.Identifier {
		t.Errorf("identifier = %q", c.Identifier())
	}
	fake.SendInvoke("r1")
	fake.SendShutdown(time.Second)
	ev, err := c.Next(ctx)
	if err != nil || ev.EventType != extapi.Invoke || ev.RequestID != "r1" {
		t.Fatalf("first event = %+v, %v", ev, err)
	}
	ev, err = c.Next(ctx)
	if err != nil || ev.EventType != extapi.Shutdown || ev.ShutdownReason != "spindown" {
		t.Fatalf("second event = %+v, %v", ev, err)
	}
	if d := time.Until(ev.Deadline()); d <= 0 || d > time.Second {
		t.Errorf("deadline in %s", d)
	}
	if err := c.InitError(ctx, "Extension.ConfigInvalid", errors.New("bad")); err != nil {
		t.Fatal(err)
	}
	if err := c.ExitError(ctx, "Extension.Crash", errors.New("boom")); err != nil {
		t.Fatal(err)
	}
	reps := fake.Reports()
	if len(reps) != 2 || reps[0].Path != "init/error" || reps[0].ErrorType != "Extension.ConfigInvalid" || reps[0].ErrorMessage != "bad" || reps[1].Path != "exit/error" {
		t.Errorf("reports = %+v", reps)
	}
}

func TestNextWithoutRegistrationFails(t *testing.T) {
	fake := extapitest.Start()
	defer fake.Close()
	if _, err := extapi.New(fake.Addr).Next(context.Background()); err == nil {
		t.Fatal("Next succeeded without registration")
	}
}

func TestNextHonoursContext(t *testing.T) {
	fake := extapitest.Start()
	defer fake.Close()
	c := extapi.New(fake.Addr)
	if err := c.Register(context.Background(), "x", extapi.Invoke); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next = %v, want deadline exceeded", err)
	}
}

func TestRegisterRefused(t *testing.T) {
	c := extapi.New("127.0.0.1:1")
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := c.Register(ctx, "x", extapi.Invoke); err == nil {
		t.Fatal("Register succeeded without an API")
	}
}

func TestRegisterRefusalIsAStatusError(t *testing.T) {
	fake := extapitest.Start()
	defer fake.Close()
	fake.Refuse(extapi.Invoke, 403, "Extension.InvalidEventType")
	c := extapi.New(fake.Addr)
	err := c.Register(context.Background(), "x", extapi.Invoke, extapi.Shutdown)
	var se *extapi.StatusError
	if !errors.As(err, &se) || se.StatusCode != 403 || se.ErrorType != "Extension.InvalidEventType" {
		t.Fatalf("Register = %v, want a 403 StatusError with the error type", err)
	}
	// A refusal leaves the extension free to register for other events.
	if err := c.Register(context.Background(), "x", extapi.Shutdown); err != nil || c.Identifier() != extapitest.Identifier {
		t.Fatalf("second Register = %v, identifier %q", err, c.Identifier())
	}
	// No answer at all is not a refusal.
	err = extapi.New("127.0.0.1:1").Register(context.Background(), "x", extapi.Shutdown)
	if err == nil || errors.As(err, &se) {
		t.Fatalf("Register without an API = %v, want an error that is no StatusError", err)
	}
}
