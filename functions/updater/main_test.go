package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/healthcheck"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dynalite"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/updater"
)

// TestSetupUsesEnvironment builds the updater exactly as the Lambda does,
// from the environment with AWS_ENDPOINT_URL_DYNAMODB pointing at dynalite,
// and checks that three failed checks open the circuit in that table.
func TestSetupUsesEnvironment(t *testing.T) {
	srv := dynalite.Start(t)
	table := srv.NewTable(t)
	t.Setenv("AWS_ENDPOINT_URL_DYNAMODB", srv.Endpoint)
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "local")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "local")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", os.DevNull)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")

	health := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusInternalServerError)
	}))
	defer health.Close()

	var logs strings.Builder
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	env := map[string]string{TableEnv: table, updater.EnvAllowLocalTargets: "true"}
	var emf strings.Builder
	u, err := setup(context.Background(), func(k string) string { return env[k] }, logger, &emf)
	if err != nil {
		t.Fatal(err)
	}
	// One invocation: the failed check and its two confirmations open
	// the circuit.
	in := json.RawMessage(fmt.Sprintf(`{"ID":"mock-api","URL":%q,"ConfirmInterval":"100ms"}`, health.URL+"/api/resource/health"))
	out, err := u.Handle(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if !out.Transitioned || out.Checks != 3 {
		t.Errorf("output %+v, want 3 checks and a transition", out)
	}
	c, found, err := store.New(srv.Client(), table).Get(context.Background(), "mock-api")
	if err != nil || !found || c.State != circuit.Open || c.Version != 1 {
		t.Errorf("stored circuit %+v, found %v, err %v; want OPEN v1", c, found, err)
	}
	if want := fmt.Sprintf(`"Table":%q`, table); strings.Count(emf.String(), want) != 3 {
		t.Errorf("metrics do not name the breaker's table in all 3 records (%s): %s", want, emf.String())
	}
	if !strings.Contains(logs.String(), `"msg":"circuit transition"`) {
		t.Errorf("no transition logged: %s", logs.String())
	}

	if _, err := setup(context.Background(), func(string) string { return "" }, logger, io.Discard); err == nil || !strings.Contains(err.Error(), TableEnv) {
		t.Errorf("setup without a table = %v, want an error naming %s", err, TableEnv)
	}

	// Without the switch, the production default refuses 127.0.0.1, and
	// the circuit's reason names only the fixed class.
	strict, err := setup(context.Background(), func(k string) string { return map[string]string{TableEnv: table}[k] }, logger, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	out, err = strict.Handle(context.Background(), json.RawMessage(fmt.Sprintf(`{"ID":"strict","URL":%q,"FailureThreshold":1}`, health.URL+"/api/resource/health")))
	if err != nil || out.Check.Outcome != healthcheck.Refused || !out.Transitioned {
		t.Fatalf("strict check = %+v, %v; want refused, and the circuit opened", out, err)
	}
	c, _, _ = store.New(srv.Client(), table).Get(context.Background(), "strict")
	if !strings.HasSuffix(c.Reason, "address not allowed: loopback") || strings.Contains(c.Reason, "127.0.0.1") {
		t.Errorf("circuit reason %q; want the fixed class only", c.Reason)
	}
	bad := map[string]string{TableEnv: table, updater.EnvAllowLocalTargets: "yes"}
	if _, err := setup(context.Background(), func(k string) string { return bad[k] }, logger, io.Discard); err == nil || !strings.Contains(err.Error(), updater.EnvAllowLocalTargets) {
		t.Errorf("setup with %s=yes = %v, want an error naming it", updater.EnvAllowLocalTargets, err)
	}
}
