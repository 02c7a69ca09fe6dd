package config

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/policy"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoadDefaults(t *testing.T) {
	c, err := Load(env(map[string]string{EnvTable: "circuits", EnvToken: "tok"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Table != "circuits" || c.Port != policy.DefaultPort || c.RefreshInterval != policy.DefaultRefreshInterval ||
		c.MaxStaleness != policy.DefaultMaxStaleness || c.FailMode != FailAllow || c.MissTimeout != DefaultMissTimeout ||
		c.MaxCircuits != DefaultMaxCircuits || c.LogLevel != slog.LevelInfo || c.Token != "tok" || len(c.Services) != 0 ||
		c.MaxAge != 2*time.Second {
		t.Errorf("defaults = %+v", c)
	}
}

func TestLoadValues(t *testing.T) {
	c, err := Load(env(map[string]string{
		EnvTable: "t", EnvServices: " a, b ,,a", EnvPort: "5000", EnvRefreshInterval: "250ms",
		EnvMaxStaleness: "1m", EnvFailMode: "DENY", EnvMissTimeout: "20ms", EnvMaxCircuits: "5", EnvLogLevel: "debug",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.Services, ",") != "a,b" || c.Port != 5000 || c.RefreshInterval != 250*time.Millisecond ||
		c.MaxStaleness != time.Minute || c.FailMode != FailDeny || c.MissTimeout != 20*time.Millisecond ||
		c.MaxCircuits != 5 || c.LogLevel != slog.LevelDebug {
		t.Errorf("config = %+v", c)
	}
}

// CIRCUIT_BREAKER_PORT=0 asks for a free port (tests); unset is the
// default port.
func TestLoadFreePort(t *testing.T) {
	for v, want := range map[string]int{"0": 0, " 0 ": 0, "": policy.DefaultPort, "5000": 5000} {
		c, err := Load(env(map[string]string{EnvTable: "t", EnvPort: v}))
		if err != nil || c.Port != want {
			t.Errorf("%s=%q: Port = %d, %v; want %d", EnvPort, v, c.Port, err, want)
		}
	}
}

func TestLoadMaxAge(t *testing.T) {
	tests := []struct {
		interval, maxAge string
		want             time.Duration
	}{
		{"", "", 2 * time.Second},             // twice the default interval
		{"250ms", "", 500 * time.Millisecond}, // twice the interval set
		{"", "0", 0},                          // turned off: old values are answered at once
		{"3s", "0s", 0},
		{"", "1s", time.Second}, // the interval itself
		{"250ms", " 10s ", 10 * time.Second},
	}
	for _, tt := range tests {
		c, err := Load(env(map[string]string{EnvTable: "t", EnvRefreshInterval: tt.interval, EnvMaxAge: tt.maxAge}))
		if err != nil || c.MaxAge != tt.want {
			t.Errorf("interval %q, max age %q: MaxAge = %s, %v; want %s", tt.interval, tt.maxAge, c.MaxAge, err, tt.want)
		}
	}
}

func TestLoadPolicies(t *testing.T) {
	c, err := Load(env(map[string]string{EnvTable: "t", EnvPolicies: `{"payments":{"halfOpenProbes":2,"window":"10s"}}`}))
	if err != nil {
		t.Fatal(err)
	}
	if p := c.Policies.For("payments"); p.Passive.HalfOpenProbes != 2 || p.Passive.Window != 10*time.Second {
		t.Errorf("payments policy = %+v", p)
	}
	if p := c.Policies.For("other"); p.Passive.HalfOpenProbes != 1 || p.Passive.MinimumCalls != 10 {
		t.Errorf("default policy = %+v", p)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"no table", map[string]string{}, EnvTable + " is required"},
		{"port", map[string]string{EnvTable: "t", EnvPort: "70000"}, EnvPort},
		{"port text", map[string]string{EnvTable: "t", EnvPort: "http"}, EnvPort},
		{"interval", map[string]string{EnvTable: "t", EnvRefreshInterval: "1"}, EnvRefreshInterval},
		{"interval negative", map[string]string{EnvTable: "t", EnvRefreshInterval: "-1s"}, EnvRefreshInterval},
		{"staleness below interval", map[string]string{EnvTable: "t", EnvRefreshInterval: "5s", EnvMaxStaleness: "2s"}, EnvMaxStaleness + " 2s: want at least the refresh interval 5s"},
		{"staleness too short", map[string]string{EnvTable: "t", EnvRefreshInterval: "100ms", EnvMaxStaleness: "500ms"}, EnvMaxStaleness + " 500ms is out of range 1s..24h0m0s"},
		{"interval too short", map[string]string{EnvTable: "t", EnvRefreshInterval: "5ms"}, EnvRefreshInterval + " 5ms is out of range 10ms..1h0m0s"},
		{"privileged port", map[string]string{EnvTable: "t", EnvPort: "80"}, EnvPort + " 80 is out of range 1024..65535"},
		{"max age too long", map[string]string{EnvTable: "t", EnvMaxAge: "25h"}, EnvMaxAge + " 25h0m0s is out of range"},
		{"fail mode", map[string]string{EnvTable: "t", EnvFailMode: "open"}, "want allow or deny"},
		{"max age below interval", map[string]string{EnvTable: "t", EnvRefreshInterval: "5s", EnvMaxAge: "1s"}, EnvMaxAge + " 1s is out of range 5s (the refresh interval)"},
		{"max age below default interval", map[string]string{EnvTable: "t", EnvMaxAge: "500ms"}, EnvMaxAge},
		{"max age negative", map[string]string{EnvTable: "t", EnvMaxAge: "-1s"}, EnvMaxAge + " -1s is negative: set " + EnvMaxAge + "=0"},
		{"max age text", map[string]string{EnvTable: "t", EnvMaxAge: "soon"}, EnvMaxAge},
		{"miss timeout", map[string]string{EnvTable: "t", EnvMissTimeout: "1h"}, "at most 10s"},
		{"max circuits", map[string]string{EnvTable: "t", EnvMaxCircuits: "0"}, EnvMaxCircuits},
		{"too many services", map[string]string{EnvTable: "t", EnvMaxCircuits: "1", EnvServices: "a,b"}, "more than"},
		{"log level", map[string]string{EnvTable: "t", EnvLogLevel: "loud"}, EnvLogLevel},
		{"service id", map[string]string{EnvTable: "t", EnvServices: "a/b"}, EnvServices},
		{"policies not JSON", map[string]string{EnvTable: "t", EnvPolicies: "payments"}, EnvPolicies + ": want a JSON object"},
		{"policy out of range", map[string]string{EnvTable: "t", EnvPolicies: `{"payments":{"halfOpenProbes":0.5}}`}, EnvPolicies},
		{"policy field", map[string]string{EnvTable: "t", EnvPolicies: `{"payments":{"minimumCalls":0,"failureRateThreshold":150}}`}, `service "payments": FailureRateThreshold 150`},
		{"no token inside Lambda", map[string]string{EnvTable: "t", EnvFunctionName: "checkout"}, "neither AWS_SESSION_TOKEN nor AWS_CONTAINER_AUTHORIZATION_TOKEN is set inside Lambda"},
		{"empty tokens inside Lambda", map[string]string{EnvTable: "t", EnvFunctionName: "checkout", "AWS_SESSION_TOKEN": "", "AWS_CONTAINER_AUTHORIZATION_TOKEN": ""}, "neither AWS_SESSION_TOKEN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(env(tt.env))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load = %v, want error containing %q", err, tt.want)
			}
		})
	}
}

// Outside Lambda (no AWS_LAMBDA_FUNCTION_NAME) a missing token only turns
// the check off; inside, either token is enough, the session token first
// (the rule of api.Token, which the clients follow too).
func TestTokenRequiredOnlyInsideLambda(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"local run, no token: check off", map[string]string{EnvTable: "t"}, ""},
		{"on-demand: session token", map[string]string{EnvTable: "t", EnvFunctionName: "checkout", "AWS_SESSION_TOKEN": "session"}, "session"},
		{"SnapStart: container token", map[string]string{EnvTable: "t", EnvFunctionName: "checkout", "AWS_CONTAINER_AUTHORIZATION_TOKEN": "container"}, "container"},
		{"both: session token", map[string]string{EnvTable: "t", EnvFunctionName: "checkout", "AWS_SESSION_TOKEN": "session", "AWS_CONTAINER_AUTHORIZATION_TOKEN": "container"}, "session"},
		{"local run, container token", map[string]string{EnvTable: "t", "AWS_CONTAINER_AUTHORIZATION_TOKEN": "container"}, "container"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(env(tt.env))
			if err != nil || c.Token != tt.want {
				t.Errorf("Load = token %q, %v; want %q and no error", c.Token, err, tt.want)
			}
		})
	}
}

func TestLoadReportsAllErrors(t *testing.T) {
	_, err := Load(env(map[string]string{EnvPort: "x", EnvFailMode: "y"}))
	for _, want := range []string{EnvTable, EnvPort, EnvFailMode} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}
