package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/appconfig"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/policy"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/updater"
)

func TestPlan(t *testing.T) {
	f, err := appconfig.Parse([]byte(`{"services":[{"id":"mock-api"},{"id":"payments","url":"https://pay.example/health","timeout":"3s","openCooldown":"2s","failureThreshold":5,"disableConfirmation":true,"checkInterval":"10s"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	checks, err := plan(f, "http://127.0.0.1:4280/api/resource/health", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		i    int
		want map[string]any
	}{
		{0, map[string]any{"ID": "mock-api", "URL": "http://127.0.0.1:4280/api/resource/health", "Timeout": "1s", "SlowCallThreshold": "500ms", "OpenCooldown": "5s", "MaxOpenCooldown": "20s", "ConfirmInterval": "1s"}},
		{1, map[string]any{"ID": "payments", "URL": "https://pay.example/health", "Timeout": "3s", "OpenCooldown": "2s", "MaxOpenCooldown": "20s", "FailureThreshold": float64(5), "ConfirmInterval": "0s"}},
	}
	for _, tt := range tests {
		var got map[string]any
		if err := json.Unmarshal(checks[tt.i].Input, &got); err != nil {
			t.Fatal(err)
		}
		if len(got) != len(tt.want) {
			t.Errorf("check %d: %v, want %v", tt.i, got, tt.want)
		}
		for k, v := range tt.want {
			if got[k] != v {
				t.Errorf("check %d: %s = %v, want %v", tt.i, k, got[k], v)
			}
		}
	}
	if _, err := plan(f, "http://x", 500*time.Millisecond); err == nil {
		t.Error("a cool-down under 1s was accepted")
	}

	// The extension's policies agree with the updater's inputs and carry
	// the passive settings from the same file.
	pols := []policy.Policy{
		{Breaker: circuit.Settings{OpenCooldown: 5 * time.Second, MaxOpenCooldown: 20 * time.Second}},
		{Breaker: circuit.Settings{OpenCooldown: 2 * time.Second, MaxOpenCooldown: 20 * time.Second, FailureThreshold: 5}},
	}
	for i, want := range pols {
		if checks[i].Policy != want {
			t.Errorf("policy %d: %+v, want %+v", i, checks[i].Policy, want)
		}
	}
	g, err := appconfig.Parse([]byte(`{"services":[{"id":"a","window":"10s","halfOpenProbes":2,"probeTimeout":"20s"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	checks, err = plan(g, "http://x", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if p := checks[0].Policy.Passive; p.Window != 10*time.Second || p.HalfOpenProbes != 2 || p.ProbeTimeout != 20*time.Second {
		t.Errorf("passive settings not carried: %+v", p)
	}
	// A window out of range is refused as services.json is read.
	if _, err := appconfig.Parse([]byte(`{"services":[{"id":"a","window":"7s"}]}`)); err == nil || !strings.Contains(err.Error(), "Window 7s") {
		t.Errorf("a 7s window: %v, want the range error", err)
	}
}

func TestLines(t *testing.T) {
	tests := []struct {
		name, got, want string
	}{
		{"transition", first(transitionLine([]byte(`{"level":"INFO","msg":"circuit transition","service":"mock-api","from":"CLOSED","to":"OPEN","reason":"3 consecutive failed checks; last: status 503 not in 200-299","version":1}`))),
			"mock-api CLOSED → OPEN (v1): 3 consecutive failed checks; last: status 503 not in 200-299"},
		{"trial failed", first(transitionLine([]byte(`{"msg":"circuit trial failed","service":"a","reason":"timeout"}`))), "a trial failed, stays OPEN: timeout"},
		{"other log line", first(transitionLine([]byte(`{"msg":"check"}`))), ""},
		{"not json", first(transitionLine([]byte(`START RequestId: x`))), ""},
		{"one check", checkLine(updater.Output{ID: "a", EffectiveState: "CLOSED", Change: "none", Checks: 1, Check: updater.CheckOutput{OK: true, LatencyMs: 2}}), "a ok 2ms → CLOSED (none)"},
		{"confirmed failure", checkLine(updater.Output{ID: "a", EffectiveState: "OPEN", Change: "transition", Checks: 3, Check: updater.CheckOutput{Detail: "status 503 not in 200-299"}}),
			"a FAIL status 503 not in 200-299 0ms → OPEN (transition), last of 3 checks"},
		{"downstream", responseLine([]byte(`{"statusCode":200,"body":"{\"message\": \"Hello from the mock service\"}"}`), 3*time.Millisecond), "200 downstream: Hello from the mock service 3ms"},
		{"fallback open", responseLine([]byte(`{"statusCode":503,"body":"{\"message\":\"x\",\"circuit\":\"OPEN\",\"source\":\"fallback\"}"}`), time.Millisecond), "503 FALLBACK (circuit OPEN) 1ms"},
		{"fallback failed call", responseLine([]byte(`{"statusCode":502,"body":"{\"message\":\"The downstream call failed: timeout\",\"source\":\"fallback\"}"}`), time.Second), "502 FALLBACK: The downstream call failed: timeout 1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}

func first(s string, _ bool) string { return s }

func TestStatesLine(t *testing.T) {
	now := time.Now()
	cs := map[string]circuit.Circuit{
		"a": {ID: "a", State: circuit.Open, Version: 1, RetryAt: now.Add(2 * time.Second)},
		"b": {ID: "b", State: circuit.Closed, ConsecutiveFailures: 2},
	}
	got := statesLine([]string{"a", "b", "c"}, cs, now)
	want := "a=OPEN v1 retry in 2s  b=CLOSED v0 failures=2  c=CLOSED (no item yet)"
	if got != want {
		t.Errorf("statesLine = %q, want %q", got, want)
	}
	if stateKey(cs) == stateKey(map[string]circuit.Circuit{"a": cs["a"]}) {
		t.Error("stateKey ignores a circuit")
	}
}

func TestLineWriter(t *testing.T) {
	var lines []string
	w := &lineWriter{fn: func(l []byte) { lines = append(lines, string(l)) }}
	for _, chunk := range []string{"one\ntw", "o\n", "three"} {
		if _, err := w.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	if strings.Join(lines, "|") != "one|two" {
		t.Errorf("lines %q, want one|two (three is incomplete)", lines)
	}
	var out bytes.Buffer
	p := &printer{w: &out, now: func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC) }}
	p.printf("fn", "%d ok", 200)
	if out.String() != "03:04:05.006  fn     200 ok\n" {
		t.Errorf("printer wrote %q", out.String())
	}
}
