package policy

import (
	"strings"
	"testing"
	"time"
)

// What the construct writes with Env, the extension reads back with
// ExtensionFromEnv, field for field.
func TestExtensionEnvRoundTrip(t *testing.T) {
	tests := []Extension{
		{},
		{Port: 5000, RefreshInterval: 250 * time.Millisecond, MaxStaleness: time.Minute, MaxAge: 3 * time.Second, FailMode: FailDeny},
		{DisableMaxAge: true, FailMode: FailAllow},
	}
	for _, in := range tests {
		env := in.Env()
		back, err := ExtensionFromEnv(func(k string) string { return env[k] })
		if err != nil || back != in {
			t.Errorf("%+v: Env %v read back as %+v, %v", in, env, back, err)
		}
	}
}

func TestExtensionValidate(t *testing.T) {
	tests := []struct {
		name string
		e    Extension
		want string // "" for valid
	}{
		{"defaults", Extension{}, ""},
		{"bounds", Extension{Port: 1024, RefreshInterval: 10 * time.Millisecond, MaxStaleness: time.Second, MaxAge: 10 * time.Millisecond}, ""},
		{"max age off", Extension{DisableMaxAge: true}, ""},
		{"port", Extension{Port: 80}, "Port 80 is out of range 1024..65535"},
		{"interval", Extension{RefreshInterval: 2 * time.Hour, MaxStaleness: 3 * time.Hour}, "RefreshInterval 2h0m0s is out of range 10ms..1h0m0s"},
		{"staleness under the default interval's default", Extension{RefreshInterval: time.Minute}, "MaxStaleness 30s: want at least the refresh interval 1m0s"},
		{"max age under the interval", Extension{RefreshInterval: 5 * time.Second, MaxAge: 2 * time.Second}, "MaxAge 2s is out of range 5s (the refresh interval)..24h0m0s"},
		{"negative max age", Extension{MaxAge: -time.Second}, "MaxAge -1s is negative: set DisableMaxAge"},
		{"both max age switches", Extension{MaxAge: time.Minute, DisableMaxAge: true}, "MaxAge is set but DisableMaxAge is true"},
		{"fail mode", Extension{FailMode: "open"}, `FailMode "open": want "allow" or "deny"`},
		{"every problem named", Extension{Port: 80, FailMode: "open"}, "Port 80 is out of range 1024..65535\nFailMode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.e.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestExtensionFromEnvErrors(t *testing.T) {
	env := map[string]string{"CIRCUIT_BREAKER_PORT": "http", "CIRCUIT_BREAKER_REFRESH_INTERVAL": "1", "CIRCUIT_BREAKER_FAIL_MODE": "open"}
	_, err := ExtensionFromEnv(func(k string) string { return env[k] })
	for _, want := range []string{`CIRCUIT_BREAKER_PORT="http"`, `CIRCUIT_BREAKER_REFRESH_INTERVAL="1"`, `CIRCUIT_BREAKER_FAIL_MODE="open"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ExtensionFromEnv = %v, want it to name %s", err, want)
		}
	}
}
