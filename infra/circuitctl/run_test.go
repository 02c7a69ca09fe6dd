package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

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

	// A circuit the table does not hold is refused without --create: a
	// typo must not override a circuit nobody monitors.
	code, _, errOut := ctl("open", "ordres", "--reason", "typo")
	if code != exitUsage || !strings.Contains(errOut, "--create") {
		t.Fatalf("open of an unknown ID = %d %s; want a refusal naming --create", code, errOut)
	}
	if r, err := store.New(srv.Client(), table).ReadCircuit(ctx, "ordres"); err != nil || r.Found || r.OverrideStored {
		t.Fatalf("refused open wrote %+v, %v", r, err)
	}

	// Force it open for an hour.
	code, out, errOut = ctl("open", "orders", "--reason", "bad deploy of orders v2", "--for", "1h", "--create")
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

	// Known now (it has an override item): no --create needed.
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

// TestCircuitctlEscapesTableText checks that text from the table, which
// attached functions can write, reaches the terminal escaped.
func TestCircuitctlEscapesTableText(t *testing.T) {
	srv := dynalite.Start(t)
	table := srv.NewTable(t)
	ctx := context.Background()
	db := srv.Client()
	// A reason with a terminal escape sequence, a bidi override, a
	// newline that would forge a status line, and a tab; a legacy override
	// attribute with an escape sequence too.
	evil := "fine\x1b]0;pwned\x07\x1b[2J\u202eenil\nother  OPEN\tX"
	if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: &table, Item: map[string]types.AttributeValue{
		"id": &types.AttributeValueMemberS{Value: "svc"}, "state": &types.AttributeValueMemberS{Value: "OPEN"},
		"version": &types.AttributeValueMemberN{Value: "1"}, "reason": &types.AttributeValueMemberS{Value: evil},
		"override": &types.AttributeValueMemberS{Value: "FORCED_\x1b[31mOPEN"}, "overrideReason": &types.AttributeValueMemberS{Value: evil},
	}}); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	env := map[string]string{"CIRCUIT_BREAKER_TABLE": table, "AWS_ENDPOINT_URL_DYNAMODB": srv.Endpoint}
	if code := run(ctx, []string{"status", "svc"}, &out, &errOut, func(k string) string { return env[k] }, nil); code != 0 {
		t.Fatalf("status = %d %s", code, errOut.String())
	}
	got := out.String()
	for _, bad := range []string{"\x1b", "\x07", "\u202e", "\r"} {
		if strings.Contains(got, bad) {
			t.Errorf("status output holds %q:\n%q", bad, got)
		}
	}
	if lines := strings.Split(strings.TrimSpace(got), "\n"); len(lines) != 2 {
		t.Errorf("status printed %d lines, want a header and one row:\n%s", len(lines), got)
	}
	for _, want := range []string{`fine\x1b]0;pwned\x07\x1b[2J\u202eenil\nother  OPEN\tX`, `unknown FORCED_\x1b[31mOPEN`} {
		if !strings.Contains(got, want) {
			t.Errorf("status output lacks the escaped text %s:\n%s", want, got)
		}
	}
}

func TestClean(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain text, ünïcödé", "plain text, ünïcödé"},
		{"a\x1b[2Jb", `a\x1b[2Jb`},
		{"tab\tnl\ncr\r", `tab\tnl\ncr\r`},
		{"\x00\x7f\u0085", `\x00\x7f\x85`},
		{"\u202eevil\u200b", `\u202eevil\u200b`},
		{"line\u2028sep", `line\u2028sep`},
		{"bad\xffutf8", `bad\xffutf8`},
		{"real \uFFFD stays", "real \uFFFD stays"},
	}
	for _, tt := range tests {
		if got := clean(tt.in); got != tt.want {
			t.Errorf("clean(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestCircuitctlOnBrokenCircuitItems checks that every command works on a
// circuit whose item an attached function made undecodable, and on one
// with a legacy override attribute that holds no valid override.
func TestCircuitctlOnBrokenCircuitItems(t *testing.T) {
	srv := dynalite.Start(t)
	table := srv.NewTable(t)
	ctx := context.Background()
	db := srv.Client()
	env := map[string]string{"CIRCUIT_BREAKER_TABLE": table, "AWS_ENDPOINT_URL_DYNAMODB": srv.Endpoint}
	ctl := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := run(ctx, args, &out, &errOut, func(k string) string { return env[k] }, nil)
		return code, out.String(), errOut.String()
	}
	put := func(item map[string]types.AttributeValue) {
		t.Helper()
		if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: &table, Item: item}); err != nil {
			t.Fatal(err)
		}
	}
	put(map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: "bogus"}, "state": &types.AttributeValueMemberS{Value: "BOGUS"}, "version": &types.AttributeValueMemberN{Value: "4"}})
	put(map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: "legacy"}, "state": &types.AttributeValueMemberS{Value: "OPEN"}, "version": &types.AttributeValueMemberN{Value: "1"},
		"override": &types.AttributeValueMemberS{Value: "WHATEVER"}, "overrideReason": &types.AttributeValueMemberS{Value: "forged"}})
	st := store.New(db, table)

	steps := []struct {
		args       []string
		wantInLine []string // in the status line of the circuit
	}{
		{[]string{"status", "bogus", "legacy"}, nil},
		{[]string{"open", "bogus", "--reason", "incident"}, []string{"OPEN", "UNREADABLE", "FORCED_OPEN (incident)", "unknown state"}},
		{[]string{"close", "bogus", "--reason", "false alarm"}, []string{"CLOSED", "UNREADABLE", "FORCED_CLOSED (false alarm)"}},
		{[]string{"clear", "bogus"}, []string{"FAILURE_POLICY", "UNREADABLE"}},
		{[]string{"status", "legacy"}, []string{"OPEN", "unknown WHATEVER (ignored)"}},
		{[]string{"clear", "legacy"}, []string{"OPEN"}},
	}
	for _, s := range steps {
		code, out, errOut := ctl(s.args...)
		if code != 0 {
			t.Fatalf("circuitctl %q = %d: %s", s.args, code, errOut)
		}
		for _, want := range s.wantInLine {
			if line := lineOf(out, s.args[1]); !strings.Contains(line, want) {
				t.Errorf("circuitctl %q: status line %q lacks %q", s.args, line, want)
			}
		}
	}
	if c, _, err := st.Get(ctx, "legacy"); err != nil || c.Override != circuit.NoOverride || c.State != circuit.Open {
		t.Errorf("legacy after clear = %+v, %v", c, err)
	}
	if _, out, _ := ctl("status", "legacy"); strings.Contains(out, "WHATEVER") {
		t.Errorf("status after clear still shows the invalid override:\n%s", out)
	}
}

// lineOf returns the line of out that starts with id.
func lineOf(out, id string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, id+" ") {
			return l
		}
	}
	return ""
}
