package appconfig

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name, in, wantErr string
	}{
		{"minimal", `{"services":[{"id":"mock-api"}]}`, ""},
		{"full", `{"services":[{"id":"orders","url":"https://x/health","schedule":"rate(5 minutes)","timeout":"2s","failureThreshold":5}]}`, ""},
		{"unknown key", `{"services":[{"id":"a","timeoutSeconds":2}]}`, "unknown field"},
		{"no services", `{"services":[]}`, "no services"},
		{"bad id", `{"services":[{"id":"a b"}]}`, "may hold only"},
		{"bad duration", `{"services":[{"id":"a","timeout":"soon"}]}`, "timeout"},
		{"negative duration", `{"services":[{"id":"a","openCooldown":"-1s"}]}`, "positive"},
		{"intervals", `{"services":[{"id":"a","confirmInterval":"2s","checkInterval":"10s"}]}`, ""},
		{"confirmation off", `{"services":[{"id":"a","disableConfirmation":true}]}`, ""},
		{"zero confirm interval", `{"services":[{"id":"a","confirmInterval":"0s"}]}`, `confirmInterval: duration "0s" must be positive`},
		{"both confirmation keys", `{"services":[{"id":"a","confirmInterval":"2s","disableConfirmation":true}]}`, "DisableConfirmation"},
		{"negative confirm interval", `{"services":[{"id":"a","confirmInterval":"-2s"}]}`, "confirmInterval"},
		{"bad check interval", `{"services":[{"id":"a","checkInterval":"0s"}]}`, "checkInterval"},
		{"check interval out of range", `{"services":[{"id":"a","checkInterval":"31s"}]}`, "CheckInterval 31s is out of range"},
		{"breaker out of range", `{"services":[{"id":"a","failureThreshold":101}]}`, "FailureThreshold 101"},
		{"passive out of range", `{"services":[{"id":"a","window":"12s"}]}`, "Window 12s"},
		{"slow above timeout", `{"services":[{"id":"a","timeout":"1s","slowCallThreshold":"2s"}]}`, "SlowCallThreshold 2s: want at most Timeout (1s)"},
		{"bad status", `{"services":[{"id":"a","expectedStatus":"2xx"}]}`, "ExpectedStatus"},
		{"read copies", `{"services":[{"id":"a","readCopies":8}]}`, ""},
		{"too many read copies", `{"services":[{"id":"a","readCopies":17}]}`, "readCopies: 17 is out of range 1..16"},
		{"negative read copies", `{"services":[{"id":"a","readCopies":-1}]}`, "readCopies: -1 is out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in))
			if tt.wantErr == "" && err != nil {
				t.Fatalf("Parse = %v, want nil", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Parse = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

// Every group's settings reach the same typed fields, and the flat form
// writes back what it read.
func TestServiceRoundTrip(t *testing.T) {
	in := `{"services":[{"id":"orders","url":"https://x/health","timeout":"2s","disableConfirmation":true,` +
		`"failureThreshold":5,"openCooldown":"1m0s","failureRateThreshold":25,"window":"10s","probeTimeout":"45s","readCopies":8}]}`
	f, err := Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	s := f.Services[0]
	want := Service{ID: "orders", URL: "https://x/health",
		HealthCheck: HealthCheck{Timeout: 2 * time.Second, DisableConfirmation: true},
		Breaker:     circuit.Settings{FailureThreshold: 5, OpenCooldown: time.Minute},
		Passive:     circuit.RateSettings{FailureRateThreshold: 25, Window: 10 * time.Second, ProbeTimeout: 45 * time.Second},
		ReadCopies:  8}
	if s != want {
		t.Fatalf("Parse = %+v, want %+v", s, want)
	}
	back, err := json.Marshal(f)
	if err != nil || string(back) != in {
		t.Fatalf("Marshal = %s, %v; want %s", back, err, in)
	}
}

func TestRepositoryConfigLoads(t *testing.T) {
	f, err := Load(filepath.Join("..", "..", DefaultPath))
	if err != nil {
		t.Fatal(err)
	}
	if f.Services[0].ID == "" {
		t.Fatal("first service has no ID")
	}
}
