package updater

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
)

func TestParseInput(t *testing.T) {
	full := `{"ID": "mock-api", "URL": "https://x/api/resource/health",
	 "Timeout": "4s", "SlowCallThreshold": "3s", "ExpectedStatus": "200-299",
	 "FailureThreshold": 3, "SuccessThreshold": 2, "OpenCooldown": "30s", "MaxOpenCooldown": "5m"}`
	tests := []struct {
		name    string
		in      string
		wantErr string
		check   func(t *testing.T, c Config)
	}{
		{name: "full example", in: full, check: func(t *testing.T, c Config) {
			if c.ID != "mock-api" || c.Probe.URL != "https://x/api/resource/health" || c.Probe.Timeout != 4*time.Second ||
				c.Probe.SlowCallThreshold != 3*time.Second || c.Probe.ExpectedStatus.String() != "200-299" ||
				c.Settings != circuit.DefaultSettings() {
				t.Errorf("config = %+v", c)
			}
		}},
		{name: "minimal takes defaults", in: `{"ID":"a","URL":"http://127.0.0.1:9/h"}`, check: func(t *testing.T, c Config) {
			if c.Probe.Timeout != 4*time.Second || c.Probe.SlowCallThreshold != 3*time.Second || !c.Probe.ExpectedStatus.Contains(204) ||
				c.Probe.ExpectedStatus.Contains(304) || c.Settings != circuit.DefaultSettings() {
				t.Errorf("defaults = %+v", c)
			}
		}},
		{name: "custom values", in: `{"ID":"b","URL":"https://h/x","Timeout":"10s","SlowCallThreshold":"500ms","ExpectedStatus":"200-299,304","FailureThreshold":5,"SuccessThreshold":1,"OpenCooldown":"1m","MaxOpenCooldown":"1h"}`, check: func(t *testing.T, c Config) {
			want := circuit.Settings{FailureThreshold: 5, SuccessThreshold: 1, OpenCooldown: time.Minute, MaxOpenCooldown: time.Hour}
			if c.Settings != want || c.Probe.Timeout != 10*time.Second || c.Probe.SlowCallThreshold != 500*time.Millisecond || !c.Probe.ExpectedStatus.Contains(304) {
				t.Errorf("config = %+v", c)
			}
		}},
		{name: "short timeout lowers the slow threshold", in: `{"ID":"a","URL":"http://h","Timeout":"1s"}`, check: func(t *testing.T, c Config) {
			if c.Probe.SlowCallThreshold != time.Second {
				t.Errorf("slow threshold %s, want 1s", c.Probe.SlowCallThreshold)
			}
		}},
		{name: "long cool-down raises the default cap", in: `{"ID":"a","URL":"http://h","OpenCooldown":"10m"}`, check: func(t *testing.T, c Config) {
			if c.Settings.MaxOpenCooldown != 10*time.Minute {
				t.Errorf("cap %s, want 10m", c.Settings.MaxOpenCooldown)
			}
		}},
		{name: "short cap lowers the default cool-down", in: `{"ID":"a","URL":"http://h","MaxOpenCooldown":"10s"}`, check: func(t *testing.T, c Config) {
			if c.Settings.OpenCooldown != 10*time.Second || c.Settings.MaxOpenCooldown != 10*time.Second {
				t.Errorf("settings %+v, want 10s cool-down and cap", c.Settings)
			}
		}},
		{name: "construct's duration format", in: `{"ID":"a","URL":"http://h","Timeout":"4s","OpenCooldown":"1m30s","MaxOpenCooldown":"5m0s"}`, check: func(t *testing.T, c Config) {
			if c.Settings.OpenCooldown != 90*time.Second || c.Settings.MaxOpenCooldown != 5*time.Minute {
				t.Errorf("settings %+v", c.Settings)
			}
		}},
		{name: "confirmation defaults on, no check interval", in: `{"ID":"a","URL":"http://h"}`, check: func(t *testing.T, c Config) {
			if c.ConfirmInterval != DefaultConfirmInterval || c.CheckInterval != 0 {
				t.Errorf("intervals %s, %s; want %s, 0", c.ConfirmInterval, c.CheckInterval, DefaultConfirmInterval)
			}
		}},
		{name: "intervals", in: `{"ID":"a","URL":"http://h","ConfirmInterval":"2s","CheckInterval":"10s"}`, check: func(t *testing.T, c Config) {
			if c.ConfirmInterval != 2*time.Second || c.CheckInterval != 10*time.Second {
				t.Errorf("intervals %s, %s; want 2s, 10s", c.ConfirmInterval, c.CheckInterval)
			}
		}},
		{name: "confirmation off", in: `{"ID":"a","URL":"http://h","ConfirmInterval":"0s"}`, check: func(t *testing.T, c Config) {
			if c.ConfirmInterval != 0 {
				t.Errorf("ConfirmInterval %s, want 0 (off)", c.ConfirmInterval)
			}
		}},
		{name: "confirm interval too long", in: `{"ID":"a","URL":"http://h","ConfirmInterval":"31s"}`, wantErr: `ConfirmInterval: "31s" is out of range 0s..30s`},
		{name: "negative confirm interval", in: `{"ID":"a","URL":"http://h","ConfirmInterval":"-1s"}`, wantErr: `ConfirmInterval: "-1s" is out of range`},
		{name: "check interval too short", in: `{"ID":"a","URL":"http://h","CheckInterval":"999ms"}`, wantErr: `CheckInterval: "999ms" is out of range 1s..30s`},
		{name: "check interval too long", in: `{"ID":"a","URL":"http://h","CheckInterval":"1m"}`, wantErr: `CheckInterval: "1m" is out of range`},
		{name: "check interval not a duration", in: `{"ID":"a","URL":"http://h","CheckInterval":"10"}`, wantErr: `CheckInterval: "10" is not a Go duration`},
		{name: "empty", in: ``, wantErr: "not a JSON object"},
		{name: "array", in: `[]`, wantErr: "not a JSON object"},
		{name: "null", in: `null`, wantErr: "not a JSON object"},
		{name: "string", in: `"x"`, wantErr: "not a JSON object"},
		{name: "missing ID", in: `{"URL":"http://h"}`, wantErr: "ID is missing"},
		{name: "empty ID", in: `{"ID":"","URL":"http://h"}`, wantErr: "empty service ID"},
		{name: "bad ID", in: `{"ID":"a b","URL":"http://h"}`, wantErr: "may hold only"},
		{name: "missing URL", in: `{"ID":"a"}`, wantErr: "URL is missing"},
		{name: "both missing", in: `{}`, wantErr: "ID is missing"},
		{name: "empty URL", in: `{"ID":"a","URL":""}`, wantErr: "URL is empty"},
		{name: "malformed URL", in: `{"ID":"a","URL":"http://[::1"}`, wantErr: "malformed"},
		{name: "relative URL", in: `{"ID":"a","URL":"/health"}`, wantErr: "scheme"},
		{name: "ftp URL", in: `{"ID":"a","URL":"ftp://h/x"}`, wantErr: `scheme "ftp"`},
		{name: "file URL", in: `{"ID":"a","URL":"file:///etc/passwd"}`, wantErr: `scheme "file"`},
		{name: "unknown key", in: `{"ID":"a","URL":"http://h","Retries":3}`, wantErr: `unknown key "Retries"`},
		{name: "lower-case key", in: `{"id":"a","URL":"http://h"}`, wantErr: `unknown key "id"`},
		{name: "duplicate key", in: `{"ID":"a","ID":"b","URL":"http://h"}`, wantErr: `duplicate key "ID"`},
		{name: "null value", in: `{"ID":"a","URL":"http://h","Timeout":null}`, wantErr: "Timeout is null"},
		{name: "trailing data", in: `{"ID":"a","URL":"http://h"} {}`, wantErr: "trailing data"},
		{name: "truncated", in: `{"ID":"a","URL":"http://h"`, wantErr: "malformed JSON"},
		{name: "wrong type", in: `{"ID":"a","URL":"http://h","FailureThreshold":"3"}`, wantErr: "FailureThreshold"},
		{name: "fractional threshold", in: `{"ID":"a","URL":"http://h","FailureThreshold":2.5}`, wantErr: "FailureThreshold"},
		{name: "ID not a string", in: `{"ID":7,"URL":"http://h"}`, wantErr: "ID"},
		{name: "bad duration", in: `{"ID":"a","URL":"http://h","Timeout":"4"}`, wantErr: `Timeout: "4" is not a Go duration`},
		{name: "negative duration", in: `{"ID":"a","URL":"http://h","OpenCooldown":"-1s"}`, wantErr: "must be positive"},
		{name: "timeout too long", in: `{"ID":"a","URL":"http://h","Timeout":"31s"}`, wantErr: "Timeout 31s is out of range"},
		{name: "timeout too short", in: `{"ID":"a","URL":"http://h","Timeout":"1us"}`, wantErr: "Timeout 1µs is out of range"},
		{name: "slow above timeout", in: `{"ID":"a","URL":"http://h","Timeout":"2s","SlowCallThreshold":"3s"}`, wantErr: "SlowCallThreshold 3s"},
		{name: "zero threshold", in: `{"ID":"a","URL":"http://h","FailureThreshold":0}`, wantErr: "FailureThreshold: 0 is out of range 1..100"},
		{name: "threshold too big", in: `{"ID":"a","URL":"http://h","SuccessThreshold":101}`, wantErr: "SuccessThreshold: 101 is out of range"},
		{name: "cool-down too short", in: `{"ID":"a","URL":"http://h","OpenCooldown":"500ms"}`, wantErr: "OpenCooldown 500ms is out of range"},
		{name: "cool-down too long", in: `{"ID":"a","URL":"http://h","OpenCooldown":"25h","MaxOpenCooldown":"25h"}`, wantErr: "out of range"},
		{name: "cap below cool-down", in: `{"ID":"a","URL":"http://h","OpenCooldown":"1m","MaxOpenCooldown":"30s"}`, wantErr: "MaxOpenCooldown 30s"},
		{name: "empty status list", in: `{"ID":"a","URL":"http://h","ExpectedStatus":""}`, wantErr: "ExpectedStatus"},
		{name: "bad status list", in: `{"ID":"a","URL":"http://h","ExpectedStatus":"2xx"}`, wantErr: "ExpectedStatus"},
		{name: "several errors reported together", in: `{"ID":"","URL":"ftp://h","Timeout":"1h"}`, wantErr: "empty service ID"},
		{name: "too big", in: `{"ID":"a","URL":"http://h/` + strings.Repeat("a", MaxInputBytes) + `"}`, wantErr: "more than 8192"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseInput([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseInput = %+v, %v; want error containing %q", c, err, tt.wantErr)
				}
				if !strings.HasPrefix(err.Error(), "updater: ") {
					t.Errorf("error %q lacks the package prefix", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseInput: %v", err)
			}
			tt.check(t, c)
		})
	}
	// Several problems are reported at once.
	_, err := ParseInput([]byte(`{"ID":"","URL":"ftp://h","Timeout":"1h"}`))
	if err == nil || !strings.Contains(err.Error(), "scheme") {
		t.Errorf("combined errors = %v, want the URL error too", err)
	}
}

// TestInputKeysMatchWire keeps the exported Input, the parser's mirror and
// the accepted key list in step.
func TestInputKeysMatchWire(t *testing.T) {
	keys := func(v any) []string {
		var out []string
		rt := reflect.TypeOf(v)
		for i := 0; i < rt.NumField(); i++ {
			out = append(out, strings.Split(rt.Field(i).Tag.Get("json"), ",")[0])
		}
		return out
	}
	in, wire := keys(Input{}), keys(wireInput{})
	if !reflect.DeepEqual(in, wire) {
		t.Fatalf("Input keys %v != wire keys %v", in, wire)
	}
	if len(in) != len(inputKeys) {
		t.Fatalf("%d Input keys, %d accepted keys", len(in), len(inputKeys))
	}
	for _, k := range in {
		if !inputKeys[k] {
			t.Errorf("key %q not accepted", k)
		}
	}
}

// TestInputMarshalRoundTrip checks that what the construct marshals is
// what the updater parses.
func TestInputMarshalRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   Input
		want string
	}{
		{"minimal", Input{ID: "mock-api", URL: "https://x/api/resource/health"}, `{"ID":"mock-api","URL":"https://x/api/resource/health"}`},
		{"full", Input{ID: "s", URL: "http://h", Timeout: "2s", SlowCallThreshold: "1s", ExpectedStatus: "200,204", FailureThreshold: 4, SuccessThreshold: 3, OpenCooldown: "10s", MaxOpenCooldown: "1m", ConfirmInterval: "3s", CheckInterval: "15s"},
			`{"ID":"s","URL":"http://h","Timeout":"2s","SlowCallThreshold":"1s","ExpectedStatus":"200,204","FailureThreshold":4,"SuccessThreshold":3,"OpenCooldown":"10s","MaxOpenCooldown":"1m","ConfirmInterval":"3s","CheckInterval":"15s"}`},
		{"confirmation off", Input{ID: "s", URL: "http://h", ConfirmInterval: "0s"}, `{"ID":"s","URL":"http://h","ConfirmInterval":"0s"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := json.Marshal(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if string(data) != tt.want {
				t.Errorf("Marshal = %s, want %s", data, tt.want)
			}
			parsed, err := ParseInput(data)
			if err != nil {
				t.Fatal(err)
			}
			direct, err := tt.in.Config()
			if err != nil {
				t.Fatal(err)
			}
			if !sameConfig(parsed, direct) {
				t.Errorf("ParseInput = %+v, Input.Config = %+v", parsed, direct)
			}
		})
	}
	if _, err := (Input{ID: "x", URL: "gopher://h"}).Config(); err == nil {
		t.Error("Input.Config accepted a gopher URL")
	}
}

func sameConfig(a, b Config) bool {
	return a.ID == b.ID && a.Settings == b.Settings && a.ConfirmInterval == b.ConfirmInterval && a.CheckInterval == b.CheckInterval &&
		a.Probe.URL == b.Probe.URL && a.Probe.Timeout == b.Probe.Timeout &&
		a.Probe.SlowCallThreshold == b.Probe.SlowCallThreshold && a.Probe.ExpectedStatus.String() == b.Probe.ExpectedStatus.String()
}
