package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dynalite"
)

func TestCircuitctlAgainstDynalite(t *testing.T) {
	srv := dynalite.Start(t)
	table := srv.NewTable(t)
	env := map[string]string{"CIRCUIT_BREAKER_TABLE": table, "AWS_ENDPOINT_URL_DYNAMODB": srv.Endpoint}
	ctx := context.Background()
	ctl := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := run(ctx, args, &out, &errOut, func(k string) string { return env[k] }, nil)
		return code, out.String(), errOut.String()
	}

	// A circuit never written reads as CLOSED.
	code, out, _ := ctl("status", "orders")
	if code != 0 || !strings.Contains(out, "orders") || !strings.Contains(out, "CLOSED") || !strings.Contains(out, "never") {
		t.Fatalf("status = %d\n%s", code, out)
	}

	// Force it open for an hour.
	code, out, errOut := ctl("open", "orders", "--reason", "bad deploy of orders v2", "--for", "1h")
	if code != 0 || !strings.Contains(out, "FORCED_OPEN (bad deploy of orders v2)") {
		t.Fatalf("open = %d\n%s%s", code, out, errOut)
	}
	st := store.New(srv.Client(), table)
	c, _, err := st.Get(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if c.EffectiveState(now) != circuit.Open || c.Allowed(now) || c.OverrideUntil.Before(now.Add(59*time.Minute)) {
		t.Fatalf("stored circuit %+v is not forced open for an hour", c)
	}
	if !strings.Contains(strings.Split(out, "\n")[1], "OPEN") {
		t.Errorf("status line does not show OPEN: %s", out)
	}

	// Clear it: back to CLOSED; clearing again says so.
	if code, out, _ = ctl("clear", "orders"); code != 0 || !strings.Contains(out, "CLOSED") {
		t.Fatalf("clear = %d\n%s", code, out)
	}
	if code, out, _ = ctl("clear", "orders"); code != 0 || !strings.Contains(out, "had no override") {
		t.Fatalf("second clear = %d\n%s", code, out)
	}

	// Force closed, flags before the command; status of the configured services.
	if code, _, errOut = ctl("--reason", "false alarm", "close", "orders"); code != 0 {
		t.Fatalf("close = %d %s", code, errOut)
	}
	c, _, _ = st.Get(ctx, "orders")
	if c.ActiveOverride(time.Now()) != circuit.ForcedClosed || !c.OverrideUntil.IsZero() {
		t.Fatalf("stored circuit %+v is not forced closed without expiry", c)
	}
	if code, out, _ = ctl("status", "--config", "../services.json"); code != 0 || !strings.Contains(out, "mock-api") {
		t.Fatalf("status from config = %d\n%s", code, out)
	}
}

func TestCircuitctlUsageErrors(t *testing.T) {
	tests := []struct {
		args    []string
		env     map[string]string
		wantErr string
	}{
		{nil, nil, "usage"},
		{[]string{"status", "x"}, nil, "no table"},
		{[]string{"open", "orders"}, map[string]string{"CIRCUIT_BREAKER_TABLE": "t"}, "needs --reason"},
		{[]string{"open"}, map[string]string{"CIRCUIT_BREAKER_TABLE": "t"}, "exactly one ID"},
		{[]string{"open", "a b", "--reason", "x"}, map[string]string{"CIRCUIT_BREAKER_TABLE": "t"}, "may hold only"},
		{[]string{"reset", "orders"}, map[string]string{"CIRCUIT_BREAKER_TABLE": "t"}, "unknown command"},
		{[]string{"open", "orders", "--reason", "x", "--for", "-1h"}, map[string]string{"CIRCUIT_BREAKER_TABLE": "t"}, "must be positive"},
		{[]string{"open", "orders", "--bogus"}, map[string]string{"CIRCUIT_BREAKER_TABLE": "t"}, "flag provided but not defined"},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		code := run(context.Background(), tt.args, &out, &errOut, func(k string) string { return tt.env[k] }, nil)
		if code != exitUsage || !strings.Contains(errOut.String(), tt.wantErr) {
			t.Errorf("run(%q) = %d, stderr %q; want usage error containing %q", tt.args, code, errOut.String(), tt.wantErr)
		}
	}
}
